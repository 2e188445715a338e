// A1111's page globals that extensions call, reassign or pass to Python `_js=` (extension-surface.md, section 7).
// They are plain top-level functions and vars: writable globals, looked up at call time, so an extension that
// replaces one (agent-scheduler reassigns randomId and modalSaveImage) replaces it for every caller.
// The page's own helpers (gradioApp, onUiLoaded, ...) live in script.js.

/* eslint no-unused-vars: "off" */
var titles = window.titles || {};
var opts = window.opts || {};

function randomId() {
    return "task(" + Math.random().toString(36).slice(2, 9) + Math.random().toString(36).slice(2, 9) + ")";
}

function args_to_array(args) {
    return Array.prototype.slice.call(args);
}

// What the Generate button's _js passes to Python: the arguments, the first replaced by a fresh task id.
function create_submit_args(args) {
    return args_to_array(args);
}

function submit() {
    var res = create_submit_args(arguments);
    res[0] = randomId();
    return res;
}

function submit_img2img() {
    var res = create_submit_args(arguments);
    res[0] = randomId();
    res[1] = get_tab_index("mode_img2img");
    return res;
}

function submit_extras() {
    var res = create_submit_args(arguments);
    res[0] = randomId();
    return res;
}

function get_tab_index(tabId) {
    var root = gradioApp().getElementById(tabId);
    if (!root) return 0;
    var buttons = root.querySelectorAll("button[role=tab], .tab-nav > button");
    for (var i = 0; i < buttons.length; i++) {
        if (buttons[i].classList.contains("selected") || buttons[i].getAttribute("aria-selected") === "true") return i;
    }
    return 0;
}

function selected_gallery_index() {
    var root = gradioApp();
    var items = root.querySelectorAll("[id$='_gallery'] .thumbnail-item, [id$='_gallery'] .thumbnail-small");
    for (var i = 0; i < items.length; i++) {
        if (items[i].classList.contains("selected")) return i;
    }
    return -1;
}

// Set a Gradio textbox/number/slider value so that Gradio notices (A1111's updateInput).
function updateInput(target) {
    var e = new Event("input", {bubbles: true});
    Object.defineProperty(e, "target", {value: target});
    target.dispatchEvent(e);
}

function inputAccordionChecked(id, checked) {
    var accordion = gradioApp().getElementById(id);
    if (accordion && accordion.visibleCheckbox) accordion.visibleCheckbox.checked = checked;
    if (accordion && accordion.onVisibleCheckboxChange) accordion.onVisibleCheckboxChange();
}

function _clickTab(name) {
    var buttons = gradioApp().querySelectorAll("#tabs button[role=tab], #tabs > .tab-nav > button");
    for (var i = 0; i < buttons.length; i++) {
        if (buttons[i].textContent.trim() === name) { buttons[i].click(); return true; }
    }
    return false;
}

function switch_to_txt2img() {
    _clickTab("txt2img");
    return args_to_array(arguments);
}

function switch_to_img2img_tab(no) {
    _clickTab("img2img");
    var tabs = gradioApp().querySelectorAll("#mode_img2img button[role=tab], #mode_img2img > .tab-nav > button");
    if (tabs[no || 0]) tabs[no || 0].click();
}

function switch_to_img2img() {
    switch_to_img2img_tab(0);
    return args_to_array(arguments);
}

function switch_to_extras() {
    _clickTab("Extras");
    return args_to_array(arguments);
}

// The prompt textarea the user typed in last (A1111 tracks focus for the extra-networks cards).
var _lastPromptTextarea = null;
document.addEventListener("focusin", function (e) {
    var t = e.target;
    if (t && t.tagName === "TEXTAREA" && t.closest && t.closest("[id$='_prompt'], [id$='_neg_prompt']")) {
        _lastPromptTextarea = t;
    }
});

function activePromptTextarea() {
    return _lastPromptTextarea || gradioApp().querySelector("#txt2img_prompt textarea");
}

function getTranslation(text) {
    var map = window.localization || {};
    return Object.prototype.hasOwnProperty.call(map, text) ? map[text] : undefined;
}

function dimensionChange(e, is_width, is_height) {
    // A1111 draws the target size over the img2img image; there is no img2img tab here yet.
}

function selectCheckpoint(name) {
    var box = gradioApp().querySelector("#setting_sd_model_checkpoint input");
    if (!box) return;
    box.value = name;
    updateInput(box);
}

// "Save" in the lightbox; extensions (agent-scheduler) reassign it.
function modalSaveImage(event) {
    var button = gradioApp().querySelector("[id^='save_'][id$='2img'], #save_txt2img");
    if (button) button.click();
    if (event) event.stopPropagation();
}

// Context menu entries extensions add to the Generate button; kept so that adding one never throws.
var contextMenuOptions = [];
function appendContextMenuOption(targetElementSelector, entryName, entryFunction) {
    var id = targetElementSelector + "_" + entryName.replace(/\W/g, "_");
    contextMenuOptions.push({id: id, selector: targetElementSelector, name: entryName, func: entryFunction});
    return id;
}
function removeContextMenuOption(id) {
    contextMenuOptions = contextMenuOptions.filter(function (o) { return o.id !== id; });
}

// A1111's progress poller, with its argument shapes. It polls /sdapi/v1/progress (the API must be on) until
// the job is no longer active, calling onProgress with A1111's fields and atEnd once.
function requestProgress(id_task, progressbarContainer, gallery, atEnd, onProgress, inactivityTimeout) {
    var started = Date.now();
    var ended = false;
    function end() {
        if (ended) return;
        ended = true;
        if (atEnd) atEnd();
    }
    function poll() {
        fetch("./sdapi/v1/progress?skip_current_image=true").then(function (r) {
            if (!r.ok) throw new Error("HTTP " + r.status);
            return r.json();
        }).then(function (res) {
            var active = !!(res.state && res.state.job_count > 0 && !res.state.interrupted);
            var data = {active: active, queued: false, completed: !active && res.progress === 0,
                        progress: res.progress, eta: res.eta_relative, textinfo: res.textinfo,
                        live_preview: res.current_image ? "data:image/png;base64," + res.current_image : null};
            if (onProgress) onProgress(data);
            if (!active && Date.now() - started > 1000 * (inactivityTimeout || 2)) { end(); return; }
            setTimeout(poll, 500);
        }).catch(function () { end(); });
    }
    poll();
}

function onOptionsAvailable(callback) {
    if (Object.keys(opts).length) { callback(); return; }
    _optionsAvailableCallbacks.push(callback);
}
var _optionsAvailableCallbacks = [];

// Fill `opts` as A1111 does, from the settings JSON the page carries (#settings_json, kept current after
// Apply), so extensions see them without --api; the API is only a fallback for pages without that element.
(function () {
    var done = false;
    function publish(data) {
        if (done || !data) return;
        done = true;
        Object.keys(data).forEach(function (k) { opts[k] = data[k]; });
        _optionsAvailableCallbacks.forEach(function (cb) {
            try { cb(); } catch (e) { console.error("error running onOptionsAvailable callback:", e); }
        });
    }
    function fromPage() {
        var root = typeof gradioApp === "function" ? gradioApp() : document;
        var el = root && root.querySelector ? root.querySelector("#settings_json [data-opts]") : null;
        if (!el) return null;
        try { return JSON.parse(el.getAttribute("data-opts")); } catch (e) { return null; }
    }
    var tries = 0;
    function look() {
        var data = fromPage();
        if (data) { publish(data); return; }
        if (++tries < 100) { setTimeout(look, 100); return; }
        if (typeof fetch !== "function") return;
        fetch("./sdapi/v1/options").then(function (r) { return r.ok ? r.json() : null; }).then(publish)
            .catch(function () {});
    }
    look();
})();

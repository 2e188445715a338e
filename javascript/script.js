// Page helpers that A1111 extensions call: gradioApp(), onUiLoaded(), onUiUpdate(), onAfterUiUpdate(),
// onUiTabChange(), onOptionsChanged(), get_uiCurrentTab(). Same names and semantics as A1111.
(function () {
    "use strict";
    var uiLoadedCallbacks = [];
    var uiUpdateCallbacks = [];
    var uiAfterUpdateCallbacks = [];
    var uiTabChangeCallbacks = [];
    var optionsChangedCallbacks = [];
    var uiCurrentTab = null;
    var afterUpdateTimer = null;
    var loaded = false;

    window.gradioApp = function () {
        var elems = document.getElementsByTagName("gradio-app");
        var elem = elems.length === 0 ? document : elems[0];
        if (elem !== document) {
            elem.getElementById = function (id) {
                return document.getElementById(id);
            };
        }
        return elem.shadowRoot ? elem.shadowRoot : elem;
    };
    window.get_uiCurrentTab = function () {
        return gradioApp().querySelector("#tabs > .tab-nav > button.selected, #tabs button[role=tab][aria-selected=true]");
    };
    window.get_uiCurrentTabContent = function () {
        return gradioApp().querySelector("#tabs > .tabitem[id^=tab_]:not([style*='display: none'])");
    };
    window.onUiLoaded = function (cb) { uiLoadedCallbacks.push(cb); };
    window.onUiUpdate = function (cb) { uiUpdateCallbacks.push(cb); };
    window.onAfterUiUpdate = function (cb) { uiAfterUpdateCallbacks.push(cb); };
    window.onUiTabChange = function (cb) { uiTabChangeCallbacks.push(cb); };
    window.onOptionsChanged = function (cb) { optionsChangedCallbacks.push(cb); };

    function run(list, arg, name) {
        list.forEach(function (cb) {
            try { cb(arg); } catch (e) { console.error("error running " + name + " callback:", cb, e); }
        });
    }
    window.executeCallbacks = run;

    var observer = new MutationObserver(function (mutations) {
        if (!loaded && gradioApp().querySelector("#quicksettings, #tabs")) {
            loaded = true;
            run(uiLoadedCallbacks, null, "onUiLoaded");
        }
        run(uiUpdateCallbacks, mutations, "onUiUpdate");
        clearTimeout(afterUpdateTimer);
        afterUpdateTimer = setTimeout(function () { run(uiAfterUpdateCallbacks, null, "onAfterUiUpdate"); }, 200);
        var tab = window.get_uiCurrentTab();
        if (tab && tab !== uiCurrentTab) {
            uiCurrentTab = tab;
            run(uiTabChangeCallbacks, null, "onUiTabChange");
        }
    });
    function start() { observer.observe(gradioApp(), { childList: true, subtree: true }); }
    if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", start);
    } else {
        start();
    }
})();

// A1111's generation shortcuts, anywhere on the page, acting on the visible tab's buttons:
// Ctrl/Cmd+Enter = Generate (while this tab runs a job: interrupt it, then generate again),
// Alt/Option+Enter = Skip and Esc = Interrupt (only while this tab runs a job, so a job started elsewhere, e.g.
// through the API, is never stopped from here; Esc not inside a popup, dialog or open dropdown).
(function () {
    "use strict";

    function visible(el) {
        return !!el && el.offsetParent !== null;
    }

    // The tab's prefix ("txt2img", "img2img") from its visible Generate button.
    function currentTab() {
        var buttons = gradioApp().querySelectorAll("button[id$='_generate']");
        for (var i = 0; i < buttons.length; i++) {
            if (visible(buttons[i])) {
                return buttons[i].id.replace(/_generate$/, "");
            }
        }
        return null;
    }

    function button(tab, name) {
        return gradioApp().querySelector("#" + tab + "_" + name);
    }

    // The progress bar is in the tab while one of its jobs runs or waits.
    function running(tab) {
        return !!gradioApp().querySelector("#" + tab + "_progress .progressDiv");
    }

    function inPopup(target) {
        return !!(target && target.closest && target.closest("[role=dialog], .global-popup, #lightboxModal, " +
            "[role=listbox]"));
    }

    document.addEventListener("keydown", function (e) {
        var isEnter = e.key === "Enter" || e.keyCode === 13;
        var tab = (isEnter || e.key === "Escape") ? currentTab() : null;
        if (!tab) {
            return;
        }
        if (isEnter && (e.ctrlKey || e.metaKey)) {
            e.preventDefault();
            if (running(tab)) {
                button(tab, "interrupt").click();
            }
            button(tab, "generate").click();
        } else if (isEnter && e.altKey && running(tab)) {
            e.preventDefault();
            button(tab, "skip").click();
        } else if (e.key === "Escape" && running(tab) && !inPopup(e.target) && !e.defaultPrevented) {
            e.preventDefault();
            button(tab, "interrupt").click();
        }
    });
})();

// Page localization (A1111's `localization` setting): replaces UI texts found in window.localization, an
// English text -> translation map the server puts in <head>. User content (textarea/input values) is never touched.
(function () {
    "use strict";
    var skipTags = { SCRIPT: 1, STYLE: 1, TEXTAREA: 1, INPUT: 1, CODE: 1, PRE: 1 };
    var attributes = ["placeholder", "title", "aria-label"];

    function dict() {
        var d = window.localization;
        return d && typeof d === "object" && Object.keys(d).length ? d : null;
    }

    var produced = null;  // translations already on the page: never translated again (no A->B->A loops)

    function translated(d, text) {
        var key = text.trim();
        if (produced === null) {
            produced = new Set(Object.keys(d).map(function (k) { return String(d[k]); }));
        }
        if (!key || produced.has(key) || !Object.prototype.hasOwnProperty.call(d, key)) {
            return null;
        }
        return text.replace(key, d[key]);
    }

    function translateNode(d, node) {
        if (node.nodeType === Node.TEXT_NODE) {
            var parent = node.parentElement;
            if (parent && !skipTags[parent.tagName] && !parent.isContentEditable) {
                var t = translated(d, node.nodeValue);
                if (t !== null) {
                    node.nodeValue = t;
                }
            }
            return;
        }
        if (node.nodeType !== Node.ELEMENT_NODE || skipTags[node.tagName] && node.tagName !== "INPUT" &&
            node.tagName !== "TEXTAREA") {
            return;
        }
        attributes.forEach(function (name) {
            var value = node.getAttribute(name);
            if (value) {
                var t = translated(d, value);
                if (t !== null) {
                    node.setAttribute(name, t);
                }
            }
        });
        if (skipTags[node.tagName]) {
            return;
        }
        for (var child = node.firstChild; child; child = child.nextSibling) {
            translateNode(d, child);
        }
    }

    window.localizeElement = function (root) {
        var d = dict();
        if (d && root) {
            translateNode(d, root);
        }
    };

    function start() {
        var d = dict();
        if (!d) {
            return;
        }
        translateNode(d, document.body);
        // Gradio renders and re-renders components after load: translate what gets added or changed.
        new MutationObserver(function (mutations) {
            mutations.forEach(function (m) {
                if (m.type === "characterData") {
                    translateNode(d, m.target);
                } else {
                    m.addedNodes.forEach(function (n) { translateNode(d, n); });
                }
            });
        }).observe(document.body, { childList: true, subtree: true, characterData: true });
    }

    if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", start);
    } else {
        start();
    }
})();

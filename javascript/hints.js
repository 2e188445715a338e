// Mouse-over hints (`title`) for the page's controls, as A1111's hints.js, and a text fallback for icon
// buttons where the system has no colour emoji font (they would otherwise show empty boxes).
(function () {
    "use strict";

    // By button text (covers extensions' ToolButtons with the usual icons too): [hint, fallback word].
    var byText = {
        "↙️": ["Read generation parameters from prompt or last generation if prompt is empty into user interface.",
            "Paste"],
        "🗑️": ["Clear prompt", "Clear"],
        "🔄": ["Refresh", "Refresh"],
        "🎲️": ["Set seed to -1, which will cause a new random number to be used every time", "Random"],
        "🎲": ["Set seed to -1, which will cause a new random number to be used every time", "Random"],
        "♻️": ["Reuse seed from last generation, mostly useful if it was randomized", "Reuse"],
        "⇅": ["Switch width/height", "Swap"],
        "📂": ["Open images output directory", "Folder"],
        "💾": ["Save the image to a dedicated directory (log/images)", "Save"],
        "🗃️": ["Save zip archive with images to a dedicated directory (log/images)", "Zip"],
        "📋": ["Apply selected styles to current prompt", "Apply"],
        "📝": ["Copy main prompt into the style", "Copy"],
        "🖌️": ["Edit styles", "Styles"],
        "🛠️": ["Edit metadata", "Edit"]
    };
    // By element id, where the same icon means something more specific.
    var byId = {
        "refresh_sd_model_checkpoint": "Refresh the list of checkpoints",
        "refresh_sd_vae": "Refresh the list of VAEs",
        "txt2img_checkpoint_refresh": "Refresh the list of checkpoints",
        "txt2img_refresh_styles": "Refresh the list of styles",
        "txt2img_generate": "Generate (Ctrl+Enter). A click during a run queues another job.",
        "txt2img_interrupt": "Stop processing images and return any results accumulated so far (Esc)",
        "txt2img_skip": "Stop processing current image and continue processing (Alt+Enter)",
        "txt2img_subseed_show": "Seed of a different picture to be mixed into the generation",
        "txt2img_override_settings": "Settings from the pasted infotext, used for the next generation only"
    };

    var pictographic = /\p{Extended_Pictographic}/u;

    // A colour emoji font draws coloured pixels; a missing glyph draws a box in the text colour.
    function hasColourEmoji() {
        try {
            var canvas = document.createElement("canvas");
            canvas.width = canvas.height = 32;
            var ctx = canvas.getContext("2d", { willReadFrequently: true });
            ctx.textBaseline = "top";
            ctx.font = "24px sans-serif";
            ctx.fillStyle = "#000";
            ctx.fillText("\uD83D\uDD04", 0, 0);  // 🔄
            var data = ctx.getImageData(0, 0, 32, 32).data;
            for (var i = 0; i < data.length; i += 4) {
                if (data[i + 3] > 0 && (data[i] !== data[i + 1] || data[i + 1] !== data[i + 2])) {
                    return true;
                }
            }
        } catch (e) {
            return true;  // cannot tell: leave the icons alone
        }
        return false;
    }

    var noEmoji = null;

    function apply(root) {
        if (noEmoji === null) {
            noEmoji = !hasColourEmoji();
            window.sdNoColourEmoji = noEmoji;
        }
        if (noEmoji) {
            document.body.classList.add("no-emoji");
        }
        root.querySelectorAll("button:not([data-hinted])").forEach(function (button) {
            button.setAttribute("data-hinted", "1");
            var text = (button.textContent || "").trim();
            var known = byText[text];
            var hint = byId[button.id] || (known && known[0]);
            if (hint && !button.title) {
                button.title = hint;
            }
            if (known && pictographic.test(text)) {
                button.setAttribute("data-fallback", known[1]);
            } else if (pictographic.test(text) && text.length <= 3) {
                button.setAttribute("data-fallback", button.title || "?");
            }
        });
        if (noEmoji) {
            stripLeadingIcons(root);
        }
        Object.keys(byId).forEach(function (id) {
            var el = document.getElementById(id);
            if (el && !el.title) {
                el.title = byId[id];
            }
        });
    }

    // "🔄 Refresh", "🖌️ Edit styles": without an emoji font the icon is an empty box before a word that
    // already says it all, so the icon goes.
    var leadingIcon = /^\s*(?:\p{Extended_Pictographic}\uFE0F?\s*)+(?=\S)/u;

    function stripLeadingIcons(root) {
        root.querySelectorAll("button, .label-wrap > span").forEach(function (el) {
            for (var node = el.firstChild; node; node = node.nextSibling) {
                if (node.nodeType === Node.TEXT_NODE && node.nodeValue.trim()) {
                    if (leadingIcon.test(node.nodeValue) && node.nodeValue.replace(leadingIcon, "").trim()) {
                        node.nodeValue = node.nodeValue.replace(leadingIcon, "");
                    }
                    return;
                }
            }
        });
    }

    var pending = false;

    function schedule() {
        if (!pending) {
            pending = true;
            requestAnimationFrame(function () {
                pending = false;
                apply(document);
            });
        }
    }

    function start() {
        apply(document);
        new MutationObserver(schedule).observe(document.body, { childList: true, subtree: true });
    }

    if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", start);
    } else {
        start();
    }
})();

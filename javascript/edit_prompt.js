// Prompt editing keys as in A1111 (settings in "Prompt editing"):
// Ctrl/Cmd+Up/Down change the weight of the selected text, or with nothing selected of the <extra network>,
// the (group) or the word at the caret: `cat` -> `(cat:1.1)` -> `(cat:1.2)`, back to `cat` at 1;
// `<lora:x:1>` -> `<lora:x:1.05>`. Steps: keyedit_precision_attention / keyedit_precision_extra; words end at
// keyedit_delimiters and the whitespace named in keyedit_delimiters_whitespace.
// Alt+Left/Right move the comma-separated element at the caret one place (keyedit_move).
(function () {
    "use strict";

    function readOpts() {
        var el = document.querySelector("#settings_json [data-opts]");
        if (el) {
            try {
                return JSON.parse(el.getAttribute("data-opts"));
            } catch (e) {
                console.error("settings_json is not JSON", e);
            }
        }
        return {};
    }

    function setting(opts, key, fallback) {
        return opts[key] === undefined || opts[key] === null ? fallback : opts[key];
    }

    function isPromptBox(el) {
        return !!el && el.tagName === "TEXTAREA" && !!el.closest("[id$='_prompt'], [id$='_neg_prompt']");
    }

    function delimiters(opts) {
        var chars = String(setting(opts, "keyedit_delimiters", ".,\\/!?%^*;:{}=`~() "));
        var names = { "Tab": "\t", "Carriage Return": "\r", "Line Feed": "\n" };
        (setting(opts, "keyedit_delimiters_whitespace", ["Tab", "Carriage Return", "Line Feed"]) || [])
            .forEach(function (n) { chars += names[n] || ""; });
        return chars;
    }

    // [start, end] of what the keys act on when nothing is selected, or null.
    function rangeAtCaret(text, caret, opts) {
        var open = text.lastIndexOf("<", caret - 1), close = text.indexOf(">", caret);
        if (open !== -1 && close !== -1 && text.lastIndexOf(">", caret - 1) < open &&
            (text.indexOf("<", caret) === -1 || text.indexOf("<", caret) > close)) {
            return [open, close + 1];
        }
        var depth = 0, start = -1;
        for (var i = caret - 1; i >= 0; i--) {
            if (text[i] === ")") {
                depth++;
            } else if (text[i] === "(") {
                if (depth === 0) {
                    start = i + 1;
                    break;
                }
                depth--;
            }
        }
        if (start !== -1) {
            depth = 0;
            for (var j = caret; j < text.length; j++) {
                if (text[j] === "(") {
                    depth++;
                } else if (text[j] === ")") {
                    if (depth === 0) {
                        var inner = text.slice(start, j).replace(/:\s*-?\d*\.?\d+\s*$/, "");
                        return [start, start + inner.length];
                    }
                    depth--;
                }
            }
        }
        var stops = delimiters(opts), a = caret, b = caret;
        while (a > 0 && stops.indexOf(text[a - 1]) === -1) {
            a--;
        }
        while (b < text.length && stops.indexOf(text[b]) === -1) {
            b++;
        }
        return a < b ? [a, b] : null;
    }

    function decimals(step) {
        var s = String(step);
        return s.indexOf(".") === -1 ? 0 : s.length - s.indexOf(".") - 1;
    }

    function round(value, step) {
        return parseFloat(value.toFixed(Math.min(decimals(step), 6)));
    }

    function commit(box, text, start, end) {
        box.value = text;
        box.setSelectionRange(start, end);
        box.dispatchEvent(new Event("input", { bubbles: true }));  // Gradio reads the value from this event
    }

    function editWeight(box, up, opts) {
        var text = box.value, start = box.selectionStart, end = box.selectionEnd;
        if (start === end) {
            var range = rangeAtCaret(text, start, opts);
            if (!range) {
                return false;
            }
            start = range[0];
            end = range[1];
        }
        while (start < end && /\s/.test(text[start])) {
            start++;
        }
        while (end > start && /\s/.test(text[end - 1])) {
            end--;
        }
        if (start === end) {
            return false;
        }
        var selected = text.slice(start, end);
        var sign = up ? 1 : -1;

        var extra = /^<([^>]*?)(?::(-?\d*\.?\d+))?>$/.exec(selected);
        if (extra) {
            var stepExtra = Number(setting(opts, "keyedit_precision_extra", 0.05));
            var w = extra[2] === undefined ? 1 : parseFloat(extra[2]);
            var tag = "<" + extra[1] + ":" + round(w + sign * stepExtra, stepExtra) + ">";
            commit(box, text.slice(0, start) + tag + text.slice(end), start, start + tag.length);
            return true;
        }

        var step = Number(setting(opts, "keyedit_precision_attention", 0.1));
        var after = /^:\s*(-?\d*\.?\d+)\)/.exec(text.slice(end));
        if (text[start - 1] === "(" && after) {
            var weight = round(parseFloat(after[1]) + sign * step, step);
            if (weight === 1) {  // back to plain text
                var plain = text.slice(0, start - 1) + selected + text.slice(end + after[0].length);
                commit(box, plain, start - 1, end - 1);
            } else {
                var edited = text.slice(0, end) + ":" + weight + ")" + text.slice(end + after[0].length);
                commit(box, edited, start, end);
            }
            return true;
        }
        var wrapped = "(" + selected + ":" + round(1 + sign * step, step) + ")";
        commit(box, text.slice(0, start) + wrapped + text.slice(end), start + 1, end + 1);
        return true;
    }

    function moveElement(box, right) {
        var text = box.value, caret = box.selectionStart;
        var items = text.split(",");
        var index = 0, pos = 0;
        for (; index < items.length; index++) {
            if (caret <= pos + items[index].length) {
                break;
            }
            pos += items[index].length + 1;
        }
        var target = index + (right ? 1 : -1);
        if (index >= items.length || target < 0 || target >= items.length) {
            return false;
        }
        var offset = Math.max(0, caret - pos - (items[index].length - items[index].trimStart().length));
        var trimmed = items.map(function (x) { return x.trim(); });
        var moved = trimmed[index];
        trimmed[index] = trimmed[target];
        trimmed[target] = moved;
        var joined = trimmed.join(", ");
        var at = 0;
        for (var k = 0; k < target; k++) {
            at += trimmed[k].length + 2;
        }
        var c = at + Math.min(offset, moved.length);
        commit(box, joined, c, c);
        return true;
    }

    document.addEventListener("keydown", function (e) {
        var box = e.target;
        if (!isPromptBox(box)) {
            return;
        }
        var opts;
        if ((e.ctrlKey || e.metaKey) && !e.altKey && (e.key === "ArrowUp" || e.key === "ArrowDown")) {
            opts = readOpts();
            if (editWeight(box, e.key === "ArrowUp", opts)) {
                e.preventDefault();
            }
        } else if (e.altKey && !e.ctrlKey && !e.metaKey && (e.key === "ArrowLeft" || e.key === "ArrowRight")) {
            opts = readOpts();
            if (setting(opts, "keyedit_move", true) && moveElement(box, e.key === "ArrowRight")) {
                e.preventDefault();  // also keeps Alt+Left from going back in the browser's history
            }
        }
    });
})();

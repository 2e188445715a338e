// Prompt bracket checker (built-in extension): marks the prompt when (), [] or {} do not balance.
// Uses only the page API extensions get: gradioApp() and onUiLoaded().
(function () {
    "use strict";

    var PAIRS = {"(": ")", "[": "]", "{": "}"};
    var CLOSERS = {")": "(", "]": "[", "}": "{"};

    // Returns a message naming the first problem, or "" when every bracket is matched.
    function bracketProblem(text) {
        var stack = [];
        for (var i = 0; i < text.length; i++) {
            var ch = text[i];
            if (ch === "\\") { i++; continue; }  // \( and \) are literal brackets in A1111 prompts
            if (PAIRS[ch]) {
                stack.push(ch);
            } else if (CLOSERS[ch]) {
                if (stack.length === 0 || stack[stack.length - 1] !== CLOSERS[ch]) {
                    return "Unmatched " + ch + " at position " + (i + 1);
                }
                stack.pop();
            }
        }
        if (stack.length) {
            return "Unclosed " + stack.join("") + " (missing " + stack.reverse().map(function (c) {
                return PAIRS[c];
            }).join("") + ")";
        }
        return "";
    }
    window.promptBracketProblem = bracketProblem;

    // Gradio may re-create the textarea, so the marker is found or made on each check and input is delegated.
    function check(textareaId, box) {
        var markerId = textareaId + "_bracket_warning";
        var marker = gradioApp().querySelector("#" + markerId);
        if (!marker) {
            marker = document.createElement("div");
            marker.id = markerId;
            marker.className = "prompt-bracket-warning";
            marker.style.display = "none";
            box.parentElement.appendChild(marker);
        }
        var problem = bracketProblem(box.value);
        marker.textContent = problem ? "\u26a0 " + problem : "";
        marker.style.display = problem ? "" : "none";
        box.classList.toggle("prompt-brackets-unbalanced", !!problem);
    }

    var IDS = ["txt2img_prompt", "txt2img_neg_prompt"];
    document.addEventListener("input", function (e) {
        var box = e.target;
        if (!box || box.tagName !== "TEXTAREA") return;
        for (var i = 0; i < IDS.length; i++) {
            var owner = box.closest ? box.closest("#" + IDS[i]) : null;
            if (owner) check(IDS[i], box);
        }
    }, true);
})();

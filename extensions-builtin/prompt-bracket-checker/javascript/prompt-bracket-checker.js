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

    function attach(textareaId, markerId) {
        var box = gradioApp().querySelector("#" + textareaId + " textarea");
        if (!box || box.dataset.bracketChecker) return;
        box.dataset.bracketChecker = "1";
        var marker = document.createElement("div");
        marker.id = markerId;
        marker.className = "prompt-bracket-warning";
        marker.style.display = "none";
        box.parentElement.appendChild(marker);
        var check = function () {
            var problem = bracketProblem(box.value);
            marker.textContent = problem ? "⚠ " + problem : "";
            marker.style.display = problem ? "" : "none";
            box.classList.toggle("prompt-brackets-unbalanced", !!problem);
            var counter = gradioApp().querySelector("#" + textareaId.replace("_prompt", "_token_counter"));
            if (counter) counter.classList.toggle("prompt-brackets-unbalanced", !!problem);
        };
        box.addEventListener("input", check);
        check();
    }

    onUiLoaded(function () {
        attach("txt2img_prompt", "txt2img_prompt_bracket_warning");
        attach("txt2img_neg_prompt", "txt2img_neg_prompt_bracket_warning");
    });
})();

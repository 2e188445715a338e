// A1111's "Generate forever": right-click Generate (or Interrupt) for a small menu; while on, each finished
// job of the tab starts the next one with the page's current values. A job that ends in an error, or
// "Cancel generate forever", stops it.
(function () {
    "use strict";

    var active = {};  // tab prefix -> true while generating forever
    var menu = null;

    function closeMenu() {
        if (menu) {
            menu.remove();
            menu = null;
        }
    }

    // What the tab's log says, with the finished job's id (two runs can take the same time).
    function logText(tab) {
        var log = document.getElementById("html_log_" + tab);
        if (!log) {
            return "";
        }
        var done = log.querySelector("[data-job]");
        var content = log.querySelector(".prose") || log;  // not Gradio's status tracker ("processing | 0.3s")
        return (done ? done.getAttribute("data-job") + " " : "") + (content.innerText || "");
    }

    function start(tab) {
        active[tab] = { last: logText(tab) };
        document.getElementById(tab + "_generate").click();
    }

    function stop(tab) {
        delete active[tab];
    }

    function showMenu(tab, x, y) {
        closeMenu();
        menu = document.createElement("div");
        menu.className = "context-menu";
        menu.id = "context_menu";
        menu.style.left = x + "px";
        menu.style.top = y + "px";
        var item = document.createElement("div");
        item.className = "context-menu-item";
        item.textContent = active[tab] ? "Cancel generate forever" : "Generate forever";
        item.addEventListener("click", function (e) {
            e.stopPropagation();
            closeMenu();
            if (active[tab]) {
                stop(tab);
            } else {
                start(tab);
            }
        });
        menu.appendChild(item);
        document.body.appendChild(menu);
    }

    document.addEventListener("contextmenu", function (e) {
        var button = e.target.closest && e.target.closest("button[id$='_generate'], button[id$='_interrupt']");
        if (!button) {
            return;
        }
        e.preventDefault();
        showMenu(button.id.replace(/_(generate|interrupt)$/, ""), e.pageX, e.pageY);
    });
    // Only a real click closes the menu: the page's own Generate click that starts the next forever run must not
    // make the menu vanish under the user's pointer.
    document.addEventListener("click", function (e) {
        if (e.isTrusted) {
            closeMenu();
        }
    });
    document.addEventListener("keydown", function (e) {
        if (e.key === "Escape") {
            closeMenu();
        }
    });

    // A job ended when the tab's log gains a new text: "Time taken..." (go on) or anything else (an error: stop).
    setInterval(function () {
        Object.keys(active).forEach(function (tab) {
            var text = logText(tab);
            var state = active[tab];
            if (text === state.last || !text.trim()) {
                if (!text.trim()) {
                    state.last = text;  // a run is streaming: its log is empty until it ends
                }
                return;
            }
            state.last = text;
            if (text.indexOf("Time taken") === -1) {
                stop(tab);
                return;
            }
            document.getElementById(tab + "_generate").click();
        });
    }, 500);
})();

// When a job of this page finishes (its "Time taken" line appears under the gallery), play notification.mp3
// (settings notification_audio, notification_volume), as A1111.
(function () {
    "use strict";

    function readOpts() {
        var el = document.querySelector("#settings_json [data-opts]");
        try {
            return el ? JSON.parse(el.getAttribute("data-opts")) : {};
        } catch (e) {
            return {};
        }
    }

    var seen = new WeakMap();  // log element -> the text we last saw in it

    function check() {
        document.querySelectorAll("[id^='html_log_']").forEach(function (log) {
            // The log's own content (not Gradio's status tracker), with the finished job's id.
            var content = log.querySelector(".prose") || log;
            var done = log.querySelector("[data-job]");
            var text = (done ? done.getAttribute("data-job") + " " : "") + (content.innerText || "");
            var before = seen.get(log);
            seen.set(log, text);
            if (before === undefined || text === before || text.indexOf("Time taken") === -1) {
                return;
            }
            var opts = readOpts();
            var audio = document.getElementById("notification_audio");
            if (!audio || opts.notification_audio === false) {
                return;
            }
            var volume = Number(opts.notification_volume === undefined ? 100 : opts.notification_volume);
            audio.volume = Math.max(0, Math.min(1, volume / 100));
            audio.currentTime = 0;
            var played = audio.play();
            if (played && played.catch) {
                played.catch(function (e) { console.warn("notification sound:", e.message); });
            }
        });
    }

    var pending = false;

    function schedule() {
        if (!pending) {
            pending = true;
            // setTimeout, not requestAnimationFrame: the sound matters most while the page is in the background.
            setTimeout(function () {
                pending = false;
                check();
            }, 100);
        }
    }

    function start() {
        check();
        new MutationObserver(schedule).observe(document.body, { childList: true, subtree: true, characterData: true });
    }

    if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", start);
    } else {
        start();
    }
})();

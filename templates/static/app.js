// Conveniences only: every page works without JavaScript.
document.documentElement.classList.add("has-js");
document.addEventListener("click", function (event) {
  var target = event.target.closest("[data-copy], [data-print], [data-saves]");
  if (!target) return;
  var saved = document.getElementById("saved");
  if (saved && target.hasAttribute("data-saves")) saved.checked = true;  // downloaded, copied or printed
  if (!target.matches("[data-copy], [data-print]")) return;
  if (target.hasAttribute("data-print")) { window.print(); return; }
  var source = document.getElementById(target.getAttribute("data-copy"));
  if (!source || !navigator.clipboard) return;
  var text = Array.prototype.map.call(source.querySelectorAll("code"), function (c) { return c.textContent; });
  navigator.clipboard.writeText(text.length ? text.join("\n") : source.textContent).then(function () {
    // the button's translated "Copied", shown on it and announced by screen readers
    var done = target.getAttribute("data-copied") || "Copied";
    var status = document.getElementById("copy-status");
    var label = target.textContent; target.textContent = done;
    if (status) status.textContent = done;
    setTimeout(function () { target.textContent = label; if (status) status.textContent = ""; }, 1500);
  });
});
// A <time class="local-time"> shows its moment in the reader's own time zone and language.
Array.prototype.forEach.call(document.querySelectorAll("time.local-time[datetime]"), function (el) {
  var at = new Date(el.getAttribute("datetime"));
  if (isNaN(at.getTime())) return;
  var sameDay = at.toDateString() === new Date().toDateString();
  var options = sameDay ? { hour: "2-digit", minute: "2-digit" }
    : { dateStyle: "medium", timeStyle: "short" };
  el.textContent = at.toLocaleString(document.documentElement.lang || undefined, options);
});

// Conveniences only: every page works without JavaScript.
document.documentElement.classList.add("has-js");
document.addEventListener("click", function (event) {
  var target = event.target.closest("[data-copy], [data-print]");
  if (!target) return;
  if (target.hasAttribute("data-print")) { window.print(); return; }
  var source = document.getElementById(target.getAttribute("data-copy"));
  if (!source || !navigator.clipboard) return;
  var text = Array.prototype.map.call(source.querySelectorAll("code"), function (c) { return c.textContent; });
  navigator.clipboard.writeText(text.length ? text.join("\n") : source.textContent).then(function () {
    var label = target.textContent; target.textContent = "Copied";
    setTimeout(function () { target.textContent = label; }, 1500);
  });
});

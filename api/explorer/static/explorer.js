// pile-index explorer: keyboard shortcuts only; every page works without this file.
// "/" focuses the page's search box; ArrowLeft / ArrowRight follow rel="prev" / rel="next";
// Ctrl+Enter (or Cmd+Enter) in a text area submits its form.
(function () {
  "use strict";
  function typing(el) {
    return el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable);
  }
  document.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey) && ev.target.tagName === "TEXTAREA" && ev.target.form) {
      ev.preventDefault();
      ev.target.form.requestSubmit();
      return;
    }
    if (ev.altKey || ev.ctrlKey || ev.metaKey || typing(ev.target)) return;
    if (ev.key === "/") {
      var box = document.querySelector("[data-search]");
      if (box) { ev.preventDefault(); box.focus(); if (box.select) box.select(); }
    } else if (ev.key === "ArrowLeft" || ev.key === "ArrowRight") {
      var link = document.querySelector(ev.key === "ArrowLeft" ? "a[rel=prev]" : "a[rel=next]");
      if (link) { ev.preventDefault(); window.location.href = link.href; }
    }
  });
})();

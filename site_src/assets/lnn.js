// Display math too wide for the notes column: its section takes the whole width, as the introduction does
// (`lnn-wide` in lnn.css), so that the formula shows whole instead of scrolling. Measured in the browser, with the
// fonts loaded, on every page that instant navigation shows, and again when the window is resized.
(() => {
  const wide = "(min-width: 60em)";

  function widen() {
    for (const section of document.querySelectorAll(".lnn-section.lnn-wide-math")) {
      section.classList.remove("lnn-wide", "lnn-wide-math");
    }
    if (!matchMedia(wide).matches) return;
    for (const display of document.querySelectorAll(".lnn-section:not(.lnn-wide) > .lnn-notes .katex-display")) {
      const formula = display.querySelector(".katex");
      if (formula && formula.getBoundingClientRect().width > display.clientWidth + 1) {
        display.closest(".lnn-section").classList.add("lnn-wide", "lnn-wide-math");
      }
    }
  }

  let pending = null;
  addEventListener("resize", () => {
    clearTimeout(pending);
    pending = setTimeout(widen, 150);
  });
  document.fonts.ready.then(widen);
  if (typeof document$ !== "undefined") document$.subscribe(widen);
  else widen();
  window.lnnWiden = widen;
})();

// A link to a name in a tab that is not shown (`#flax-Head` while the PyTorch code shows): its tab is clicked, as a
// reader would, once material's tabs are set up, so that every tab set of the page follows and the choice is
// remembered (`content.tabs.link`); then the name is scrolled into view.
(() => {
  function reveal() {
    const id = decodeURIComponent(location.hash.slice(1));
    const target = id ? document.getElementById(id) : null;
    const block = target ? target.closest(".tabbed-block") : null;
    if (!block) return;
    const set = block.closest(".tabbed-set");
    const index = Array.prototype.indexOf.call(block.parentElement.children, block);
    const label = set.querySelectorAll(":scope > .tabbed-labels > label")[index];
    if (!label || set.querySelectorAll(":scope > input")[index].checked) return;
    label.click();
    target.scrollIntoView();
  }

  addEventListener("hashchange", reveal);
  if (typeof document$ !== "undefined") document$.subscribe(() => setTimeout(reveal));
  else reveal();
})();

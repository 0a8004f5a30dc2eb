// The plant file's editor (templates/admin_plant.html): a problem's "line N" button selects that
// line in the textarea and scrolls it into view, so the admin lands where the mistake is.
(function () {
  "use strict";

  function selectLine(textarea, line) {
    const lines = textarea.value.split("\n");
    const index = Math.max(0, Math.min(line, lines.length) - 1);
    let start = 0;
    for (let i = 0; i < index; i++) start += lines[i].length + 1;
    textarea.focus();
    textarea.setSelectionRange(start, start + lines[index].length);
    // Line height from the rendered style; the line lands a third of the way down the box.
    const height = parseFloat(getComputedStyle(textarea).lineHeight) || 18;
    textarea.scrollTop = Math.max(0, index * height - textarea.clientHeight / 3);
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest(".line-link[data-line]");
    const textarea = document.getElementById("plant-text");
    if (!button || !textarea) return;
    selectLine(textarea, parseInt(button.dataset.line, 10));
  });
})();

// ANSI colours in build logs, drawn as the terminal that printed them would (no HTML is parsed).
//
// Select Graphic Rendition sequences (ESC [ ... m) set bold, dim, italic, underline and the
// foreground and background colours: the 16 named ones as classes (a-fg-0 ... a-fg-15), 256-colour
// and true-colour ones through the element's style object (the page's CSP allows no style
// attribute, but allows that). Every other escape sequence (cursor moves, titles) is dropped, and a
// carriage return keeps what a terminal would show: the text after it.

const ESCAPE = /\x1b(?:\[([0-9;:?]*)([@-~])|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])/g;

/** What the text printed so far has switched on; carried from one line to the next. */
export function plain() {
  return { bold: false, dim: false, italic: false, underline: false, fg: null, bg: null };
}

function palette256(n) {
  if (n < 16) return n;
  if (n >= 232) {
    const v = 8 + (n - 232) * 10;
    return `rgb(${v},${v},${v})`;
  }
  const i = n - 16;
  const level = (c) => (c === 0 ? 0 : 55 + c * 40);
  return `rgb(${level(Math.floor(i / 36))},${level(Math.floor(i / 6) % 6)},${level(i % 6)})`;
}

/** Read the numbers of one SGR sequence into `state`. */
function apply(state, params) {
  const codes = params === "" ? [0] : params.split(/[;:]/).map((p) => Number(p) || 0);
  for (let i = 0; i < codes.length; i++) {
    const code = codes[i];
    if (code === 0) Object.assign(state, plain());
    else if (code === 1) state.bold = true;
    else if (code === 2) state.dim = true;
    else if (code === 3) state.italic = true;
    else if (code === 4) state.underline = true;
    else if (code === 22) state.bold = state.dim = false;
    else if (code === 23) state.italic = false;
    else if (code === 24) state.underline = false;
    else if (code >= 30 && code <= 37) state.fg = code - 30;
    else if (code >= 90 && code <= 97) state.fg = code - 90 + 8;
    else if (code === 39) state.fg = null;
    else if (code >= 40 && code <= 47) state.bg = code - 40;
    else if (code >= 100 && code <= 107) state.bg = code - 100 + 8;
    else if (code === 49) state.bg = null;
    else if (code === 38 || code === 48) {
      let colour = null;
      if (codes[i + 1] === 5) {
        colour = palette256(codes[i + 2] ?? 0);
        i += 2;
      } else if (codes[i + 1] === 2) {
        colour = `rgb(${codes[i + 2] ?? 0},${codes[i + 3] ?? 0},${codes[i + 4] ?? 0})`;
        i += 4;
      }
      if (code === 38) state.fg = colour;
      else state.bg = colour;
    }
  }
}

function styled(text, state) {
  const { bold, dim, italic, underline, fg, bg } = state;
  if (!bold && !dim && !italic && !underline && fg === null && bg === null) return document.createTextNode(text);
  const span = document.createElement("span");
  const classes = [];
  if (bold) classes.push("a-bold");
  if (dim) classes.push("a-dim");
  if (italic) classes.push("a-italic");
  if (underline) classes.push("a-underline");
  if (typeof fg === "number") classes.push(`a-fg-${fg}`);
  else if (fg) span.style.color = fg;
  if (typeof bg === "number") classes.push(`a-bg-${bg}`);
  else if (bg) span.style.backgroundColor = bg;
  span.className = classes.join(" ");
  span.textContent = text;
  return span;
}

/**
 * The nodes that show one line of a log, ANSI colours drawn; `state` (from plain()) carries what
 * the line leaves switched on into the next one.
 */
export function render(line, state) {
  const cr = line.lastIndexOf("\r", line.length - 2);
  if (cr >= 0) line = line.slice(cr + 1); // a progress bar redrawn in place: its last drawing
  const nodes = [];
  let at = 0;
  for (const match of line.matchAll(ESCAPE)) {
    if (match.index > at) nodes.push(styled(line.slice(at, match.index), state));
    if (match[2] === "m") apply(state, match[1]);
    at = match.index + match[0].length;
  }
  const rest = line.slice(at).replace(/\r$/, "");
  if (rest) nodes.push(styled(rest, state));
  return nodes;
}

// Markdown to DOM nodes for the chat page: `GeminiMarkdown.render(text, options)`.
//
// Safe by construction: every element is made with createElement and every piece of model
// text becomes a text node, so nothing a model writes is ever parsed as HTML; `<script>` or
// `<img onerror=…>` in an answer shows as the characters it is. That is why no sanitiser is
// used: a library such as marked + DOMPurify builds an HTML string and cleans it afterwards,
// it would have to be vendored into the package (the page loads nothing from elsewhere), and
// the innerHTML it ends with is refused here anyway (the page's policy requires Trusted
// Types and allows none).
//
// Links are made only to http:, https: and mailto: URLs, as the browser's own URL parser
// reads them (so `java\tscript:` is caught for what it is); any other link, relative ones
// included, shows as the text it was written as. Images are never loaded: `![alt](url)` is
// a link to the image, so an answer cannot make the browser fetch a URL by itself (a
// prompt injection's way to send data out).
//
// The subset: ATX headings, paragraphs (a line break is a line break, as in chat answers),
// emphasis (* _ ~~), code spans, fenced code blocks, bullet and ordered lists (nested by
// indentation), block quotes, thematic breaks, GFM tables, links and autolinks. The page
// renders the whole answer again as tokens arrive, so a half-written answer must read
// well: an unclosed fence runs to the end, an unclosed `**` shows as typed until its pair
// arrives.
//
// Chunk marks: `options.marks` are offsets into `text` where a model chunk ended, and
// `options.mark(i)` makes the element for the i-th. Every character keeps its offset
// through the parse, so a mark lands right after the last character shown before it, in
// whatever element that character ended up.
"use strict";

(() => {
  const LINK_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);

  const FENCE = /^( {0,3})(`{3,}|~{3,})[ \t]*([^\s`]*)/;
  const FENCE_CLOSE = /^ {0,3}(`{3,}|~{3,})[ \t]*$/;
  const HEADING = /^ {0,3}(#{1,6})(?:[ \t]+|$)/;
  const RULE = /^ {0,3}(?:(?:-[ \t]*){3,}|(?:\*[ \t]*){3,}|(?:_[ \t]*){3,})$/;
  const QUOTE = /^ {0,3}> ?/;
  const ITEM = /^( {0,3})(?:([-*+])|(\d{1,9})([.)]))([ \t]+|$)/;
  const DELIMITER_CELL = /^[ \t]*:?-+:?[ \t]*$/;
  // Sticky (`y`): matched where the parser stands, without copying the rest of the text.
  const AUTOLINK = /<([A-Za-z][A-Za-z0-9+.-]{1,31}:[^\s<>]*)>/y;
  const EMAIL_AUTOLINK = /<([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)>/y;
  const BARE_URL = /https?:\/\/[^\s<>"]+/iy;
  const PUNCTUATION = /[!-/:-@[-`{-~]/;
  const WORD = /[\p{L}\p{N}]/u;
  const SPACE = /\s/;

  /** The URL to link to, as the browser will read it; null unless http(s) or mailto. */
  function safeUrl(raw) {
    let url;
    try {
      url = new URL(raw); // no base: a relative URL throws, and is no link
    } catch (_) {
      return null;
    }
    return LINK_PROTOCOLS.has(url.protocol) ? url.href : null;
  }

  function element(tag, className) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    return node;
  }

  function link(href, title) {
    const a = element("a");
    a.href = href;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    if (title) a.title = title;
    return a;
  }

  function unescape(text) {
    return text.replace(/\\([!-/:-@[-`{-~])/g, "$1");
  }

  // --- text with offsets ------------------------------------------------------------------
  //
  // A piece of source is {text, pos, end}: `pos[i]` is where `text[i]` is in the answer, and
  // `end` where the piece's line ends. Stripping a list marker or a `>` keeps the offsets.

  function slice(piece, start, stop = piece.text.length) {
    const end = stop < piece.text.length ? piece.pos[stop] : piece.end;
    return { text: piece.text.slice(start, stop), pos: piece.pos.subarray(start, stop), end };
  }

  function splitLines(piece) {
    const lines = [];
    let start = 0;
    for (;;) {
      const newline = piece.text.indexOf("\n", start);
      const stop = newline === -1 ? piece.text.length : newline;
      const content = stop > start && piece.text[stop - 1] === "\r" ? stop - 1 : stop;
      lines.push(slice(piece, start, content));
      if (newline === -1) return lines;
      start = newline + 1;
    }
  }

  /** Lines joined by line breaks, each break at the offset where its line ended. */
  function join(lines) {
    const text = lines.map((line) => line.text).join("\n");
    const pos = new Int32Array(text.length);
    let at = 0;
    lines.forEach((line, index) => {
      if (index > 0) pos[at++] = lines[index - 1].end;
      pos.set(line.pos, at);
      at += line.text.length;
    });
    return { text, pos, end: lines.length ? lines[lines.length - 1].end : 0 };
  }

  function leadingSpaces(text) {
    return text.length - text.trimStart().length;
  }

  function isBlank(text) {
    return text.trim() === "";
  }

  /** Where text goes: text nodes, with the chunk marks put in between. */
  class Output {
    constructor(marks, mark) {
      this.marks = mark ? marks : [];
      this.makeMark = mark;
      this.next = 0; // the first mark not yet placed
      this.last = null; // the last text node written
    }

    text(parent, piece, start, stop) {
      let from = start;
      for (let i = start; i < stop && this.next < this.marks.length; i++) {
        while (this.next < this.marks.length && this.marks[this.next] <= piece.pos[i]) {
          // The chunk ended before this character: the mark goes after the text before it.
          if (i > from) {
            this.write(parent, piece.text.slice(from, i));
            from = i;
          }
          this.place(parent);
        }
      }
      if (stop > from) this.write(parent, piece.text.slice(from, stop));
    }

    write(parent, text) {
      const node = document.createTextNode(text);
      parent.append(node);
      this.last = node;
    }

    place(parent) {
      const mark = this.makeMark(this.next);
      this.next += 1;
      if (this.last) this.last.after(mark);
      else parent.append(mark);
      this.last = mark;
    }

    /** The marks after the last character shown (a chunk that ended the answer). */
    finish(root) {
      while (this.next < this.marks.length) this.place(root);
    }
  }

  // --- blocks -------------------------------------------------------------------------------

  function blocks(lines, parent, out, tight) {
    let i = 0;
    while (i < lines.length) {
      const text = lines[i].text;
      if (isBlank(text)) {
        i += 1;
      } else if (fence(text)) {
        i = codeBlock(lines, i, parent, out);
      } else if (HEADING.test(text)) {
        heading(lines[i], parent, out);
        i += 1;
      } else if (RULE.test(text)) {
        parent.append(element("hr"));
        i += 1;
      } else if (QUOTE.test(text)) {
        i = quote(lines, i, parent, out);
      } else if (ITEM.test(text)) {
        i = list(lines, i, parent, out);
      } else if (tableStarts(lines, i)) {
        i = table(lines, i, parent, out);
      } else {
        i = paragraph(lines, i, parent, out, tight);
      }
    }
  }

  function fence(text) {
    const match = FENCE.exec(text);
    // A backtick fence's info string has no backtick: "```a``` b" is a code span.
    if (!match || (match[2][0] === "`" && text.slice(match[0].length).includes("`"))) return null;
    return match;
  }

  /** Whether line `i` ends a paragraph by starting another block. */
  function interrupts(lines, i) {
    const text = lines[i].text;
    if (isBlank(text) || fence(text) || HEADING.test(text) || RULE.test(text)) return true;
    if (QUOTE.test(text) || tableStarts(lines, i)) return true;
    const item = ITEM.exec(text);
    // As in CommonMark: only a non-empty item, and an ordered one only from 1.
    return Boolean(item && !isBlank(text.slice(item[0].length)) && (item[2] || item[3] === "1"));
  }

  function codeBlock(lines, i, parent, out) {
    const [, indent, marker, info] = fence(lines[i].text);
    const body = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const close = FENCE_CLOSE.exec(lines[j].text);
      if (close && close[1][0] === marker[0] && close[1].length >= marker.length) break;
      const strip = Math.min(indent.length, leadingSpaces(lines[j].text));
      body.push(slice(lines[j], strip));
    }
    const pre = element("pre");
    const code = element("code");
    if (info) code.dataset.lang = unescape(info);
    if (body.length) {
      const text = join(body);
      out.text(code, text, 0, text.text.length);
    }
    pre.append(code);
    parent.append(pre);
    return j + 1; // past the closing fence; an unclosed one runs to the end
  }

  function heading(line, parent, out) {
    const match = HEADING.exec(line.text);
    const node = element(`h${match[1].length}`);
    const content = slice(line, match[0].length);
    // Closing hashes ("## Title ##") and trailing spaces are not part of the title.
    const closing = /(?:^|[ \t]+)#+[ \t]*$|[ \t]+$/.exec(content.text);
    inline(content, 0, closing ? closing.index : content.text.length, node, out, false);
    parent.append(node);
  }

  function quote(lines, i, parent, out) {
    const inner = [];
    let j = i;
    for (; j < lines.length; j++) {
      const text = lines[j].text;
      const match = QUOTE.exec(text);
      const lazy = !match && !interrupts(lines, j) && !isBlank(inner[inner.length - 1].text);
      if (match) inner.push(slice(lines[j], match[0].length));
      else if (lazy) inner.push(lines[j]); // a lazy continuation of the quoted paragraph
      else break;
    }
    const node = element("blockquote");
    blocks(inner, node, out, false);
    parent.append(node);
    return j;
  }

  function list(lines, i, parent, out) {
    const first = ITEM.exec(lines[i].text);
    const kind = first[2] || first[4]; // the bullet, or the ordered list's `.` or `)`
    const node = element(first[2] ? "ul" : "ol");
    if (first[3] && Number(first[3]) !== 1) node.start = Number(first[3]);
    const items = [];
    let loose = false;
    let j = i;
    while (j < lines.length) {
      const match = ITEM.exec(lines[j].text);
      if (!match || (match[2] || match[4]) !== kind || RULE.test(lines[j].text)) break;
      const spaces = match[5].length;
      const indent = match[0].length - spaces + (spaces === 0 || spaces > 4 ? 1 : spaces);
      const content = [slice(lines[j], match[0].length)];
      let blanks = 0;
      j += 1;
      while (j < lines.length) {
        const text = lines[j].text;
        if (isBlank(text)) {
          blanks += 1;
          j += 1;
        } else if (leadingSpaces(text) >= indent) {
          for (; blanks > 0; blanks--) content.push(slice(lines[j - blanks], 0, 0));
          if (content.some((line) => isBlank(line.text))) loose = true;
          content.push(slice(lines[j], indent));
          j += 1;
        } else if (ITEM.test(text) || blanks || interrupts(lines, j)) {
          break; // the next item, or the end of the list
        } else if (!isBlank(content[content.length - 1].text)) {
          content.push(lines[j]); // a lazy continuation of the item's paragraph
          j += 1;
        } else break;
      }
      items.push(content);
      // Blank lines between items make the list loose (each item's text in a <p>).
      const next = j < lines.length && ITEM.exec(lines[j].text);
      if (blanks && next && (next[2] || next[4]) === kind) loose = true;
    }
    for (const content of items) {
      const li = element("li");
      blocks(content, li, out, !loose);
      node.append(li);
    }
    parent.append(node);
    return j;
  }

  function tableStarts(lines, i) {
    if (i + 1 >= lines.length || !lines[i].text.includes("|")) return false;
    const cells = splitRow(lines[i + 1]);
    if (!cells.every((cell) => DELIMITER_CELL.test(cell.text))) return false;
    return splitRow(lines[i]).length === cells.length;
  }

  /** A table row's cells: split at each `|` that is neither escaped nor in a code span. */
  function splitRow(line) {
    const text = line.text;
    const cells = [];
    let start = leadingSpaces(text);
    let stop = text.trimEnd().length;
    if (text[start] === "|") start += 1;
    if (stop > start && text[stop - 1] === "|" && text[stop - 2] !== "\\") stop -= 1;
    let from = start;
    for (let i = start; i < stop; i++) {
      if (text[i] === "\\") i += 1;
      else if (text[i] === "`") {
        const n = run(text, i, stop, "`");
        const close = codeClose(text, i + n, stop, n);
        i = (close === -1 ? i + n : close + n) - 1;
      } else if (text[i] === "|") {
        cells.push(trimmed(line, from, i));
        from = i + 1;
      }
    }
    cells.push(trimmed(line, from, stop));
    return cells;
  }

  function trimmed(line, start, stop) {
    const text = line.text.slice(start, stop);
    const head = leadingSpaces(text);
    return slice(line, start + head, start + Math.max(head, text.trimEnd().length));
  }

  function table(lines, i, parent, out) {
    const head = splitRow(lines[i]);
    const align = splitRow(lines[i + 1]).map((cell) => {
      const text = cell.text.trim();
      if (text.startsWith(":") && text.endsWith(":")) return "center";
      if (text.endsWith(":")) return "right";
      return text.startsWith(":") ? "left" : "";
    });
    const wrap = element("div", "table-wrap"); // scrolls sideways on its own, not the page
    const node = element("table");
    const thead = element("thead");
    thead.append(row(head, "th", align, out));
    const tbody = element("tbody");
    let j = i + 2;
    for (; j < lines.length && lines[j].text.includes("|") && !interrupts(lines, j); j++) {
      const cells = splitRow(lines[j]).slice(0, head.length);
      tbody.append(row(cells, "td", align, out));
    }
    node.append(thead, tbody);
    wrap.append(node);
    parent.append(wrap);
    return j;
  }

  function row(cells, tag, align, out) {
    const tr = element("tr");
    align.forEach((side, index) => {
      const cell = element(tag);
      if (side) cell.dataset.align = side; // a class-like attribute: the policy forbids style=""
      if (cells[index]) inline(cells[index], 0, cells[index].text.length, cell, out, false);
      tr.append(cell);
    });
    return tr;
  }

  function paragraph(lines, i, parent, out, tight) {
    const content = [slice(lines[i], leadingSpaces(lines[i].text))];
    let j = i + 1;
    for (; j < lines.length && !interrupts(lines, j); j++) {
      content.push(slice(lines[j], leadingSpaces(lines[j].text)));
    }
    const text = join(content);
    // In a tight list the item's text stands without a <p>, as CommonMark renders it.
    const target = tight ? parent : parent.appendChild(element("p"));
    inline(text, 0, text.text.length, target, out, false);
    return j;
  }

  // --- inline -------------------------------------------------------------------------------

  function run(text, i, stop, char) {
    let j = i;
    while (j < stop && text[j] === char) j += 1;
    return j - i;
  }

  /** The start of the next run of exactly `n` backticks, or -1. */
  function codeClose(text, i, stop, n) {
    for (let j = i; j < stop; ) {
      if (text[j] === "`") {
        const m = run(text, j, stop, "`");
        if (m === n) return j;
        j += m;
      } else j += 1;
    }
    return -1;
  }

  function inline(piece, start, stop, parent, out, inLink) {
    const text = piece.text;
    let from = start; // the start of the plain text not yet written
    let i = start;
    const flush = (to) => {
      if (to > from) out.text(parent, piece, from, to);
    };
    while (i < stop) {
      const c = text[i];
      if (c === "\\" && i + 1 < stop && PUNCTUATION.test(text[i + 1])) {
        flush(i);
        from = i + 1; // the escaped character is plain text
        i += 2;
      } else if (c === "\n") {
        flush(i);
        parent.append(element("br"));
        from = i += 1;
      } else if (c === "`") {
        const n = run(text, i, stop, "`");
        const close = codeClose(text, i + n, stop, n);
        if (close === -1) {
          i += n;
          continue;
        }
        flush(i);
        let a = i + n;
        let b = close;
        // One space each side is padding ("`` `x` ``"), unless the span is all spaces.
        if (b - a >= 2 && text[a] === " " && text[b - 1] === " " && text.slice(a, b).trim()) {
          a += 1;
          b -= 1;
        }
        const code = element("code");
        out.text(code, piece, a, b);
        parent.append(code);
        from = i = close + n;
      } else if (!inLink && (c === "[" || (c === "!" && text[i + 1] === "["))) {
        const image = c === "!";
        const found = parseLink(text, image ? i + 1 : i, stop);
        if (!found) {
          i += image ? 2 : 1;
          continue;
        }
        const href = safeUrl(found.dest);
        if (href) {
          flush(i);
          const a = link(href, found.title);
          if (image) a.className = "image-link";
          if (found.labelEnd > found.labelStart) {
            inline(piece, found.labelStart, found.labelEnd, a, out, true);
          } else {
            out.text(a, piece, found.destStart, found.destEnd);
          }
          parent.append(a);
          from = found.end;
        }
        // A link to anything else stays as written: it is part of the plain text.
        i = found.end;
      } else if (!inLink && c === "<") {
        const match = matchAt(AUTOLINK, text, i, stop) || matchAt(EMAIL_AUTOLINK, text, i, stop);
        const href = match && safeUrl(match[1].includes(":") ? match[1] : `mailto:${match[1]}`);
        if (href) {
          flush(i);
          const a = link(href);
          out.text(a, piece, i + 1, i + match[0].length - 1);
          parent.append(a);
          from = i + match[0].length;
        }
        i += match ? match[0].length : 1;
      } else if (c === "*" || c === "_" || c === "~") {
        const n = run(text, i, stop, c);
        const close = emphasisClose(text, i, stop, n);
        if (close === -1) {
          i += n;
          continue;
        }
        flush(i);
        let node;
        if (c === "~") node = element("del");
        else if (n === 1) node = element("em");
        else node = element("strong");
        let inner = node;
        if (n === 3) {
          inner = element("em");
          node.append(inner);
        }
        inline(piece, i + n, close, inner, out, inLink);
        parent.append(node);
        from = i = close + n;
      } else if (!inLink && (c === "h" || c === "H") && !(i > start && WORD.test(text[i - 1]))) {
        const length = bareUrl(text, i, stop);
        const href = length && safeUrl(text.slice(i, i + length));
        if (href) {
          flush(i);
          const a = link(href);
          out.text(a, piece, i, i + length);
          parent.append(a);
          from = i += length;
        } else i += 1;
      } else {
        i += 1;
      }
    }
    flush(stop);
  }

  /** `regex` (sticky) matched at `i`, if the match ends by `stop`. */
  function matchAt(regex, text, i, stop) {
    regex.lastIndex = i;
    const match = regex.exec(text);
    return match && i + match[0].length <= stop ? match : null;
  }

  /** The length of a bare URL at `i`, without the punctuation after it. */
  function bareUrl(text, i, stop) {
    BARE_URL.lastIndex = i;
    const match = BARE_URL.exec(text);
    if (!match) return 0;
    let url = match[0].slice(0, stop - i);
    for (;;) {
      const last = url[url.length - 1];
      if (/[.,:;!?'"*_~]/.test(last)) url = url.slice(0, -1);
      else if (last === ")" && count(url, "(") < count(url, ")")) url = url.slice(0, -1);
      else return url.length;
    }
  }

  function count(text, char) {
    return text.split(char).length - 1;
  }

  /**
   * Where the run of `n` delimiters at `i` is closed, or -1.
   *
   * Simpler than CommonMark's delimiter stack, and enough for what models write: an opener
   * is followed by a non-space, its closer is the next run of the same length that
   * follows a non-space; `_` never opens or closes inside a word (snake_case_names).
   */
  function emphasisClose(text, i, stop, n) {
    const c = text[i];
    if ((c === "~" && n !== 2) || n > 3) return -1;
    const after = i + n < stop ? text[i + n] : " ";
    if (SPACE.test(after)) return -1;
    if (c === "_" && i > 0 && WORD.test(text[i - 1])) return -1;
    for (let j = i + n; j < stop; ) {
      const ch = text[j];
      if (ch === "\\") {
        j += 2;
      } else if (ch === "`") {
        const m = run(text, j, stop, "`");
        const close = codeClose(text, j + m, stop, m);
        j = close === -1 ? j + m : close + m;
      } else if (ch === c) {
        const m = run(text, j, stop, c);
        const closes = !SPACE.test(text[j - 1]) && !(c === "_" && WORD.test(text[j + m] || ""));
        if (m === n && closes && j > i + n) return j;
        j += m;
      } else {
        j += 1;
      }
    }
    return -1;
  }

  /** `[label](destination "title")` at `i`: its parts, or null if it is not one (yet). */
  function parseLink(text, i, stop) {
    let depth = 0;
    let j = i;
    for (; j < stop; j++) {
      const ch = text[j];
      if (ch === "\\") j += 1;
      else if (ch === "`") {
        const n = run(text, j, stop, "`");
        const close = codeClose(text, j + n, stop, n);
        j = (close === -1 ? j + n : close + n) - 1;
      } else if (ch === "[") depth += 1;
      else if (ch === "]" && --depth === 0) break;
    }
    if (j >= stop || text[j + 1] !== "(") return null;
    const labelEnd = j;
    let k = skipSpaces(text, j + 2, stop);
    let destStart;
    let destEnd;
    if (text[k] === "<") {
      const close = text.indexOf(">", k + 1);
      if (close === -1 || close >= stop || text.slice(k + 1, close).includes("\n")) return null;
      destStart = k + 1;
      destEnd = close;
      k = close + 1;
    } else {
      let parens = 0;
      destStart = k;
      for (; k < stop; k++) {
        const ch = text[k];
        if (ch === "\\" && k + 1 < stop) k += 1;
        else if (SPACE.test(ch) || ch < " ") break;
        else if (ch === "(") parens += 1;
        else if (ch === ")") {
          if (parens === 0) break;
          parens -= 1;
        }
      }
      destEnd = k;
    }
    k = skipSpaces(text, k, stop);
    let title = null;
    if (k > destEnd && (text[k] === '"' || text[k] === "'" || text[k] === "(")) {
      const closer = text[k] === "(" ? ")" : text[k];
      let e = k + 1;
      for (; e < stop && text[e] !== closer; e++) if (text[e] === "\\") e += 1;
      if (e >= stop) return null;
      title = unescape(text.slice(k + 1, e));
      k = skipSpaces(text, e + 1, stop);
    }
    if (text[k] !== ")") return null;
    const dest = unescape(text.slice(destStart, destEnd));
    return { labelStart: i + 1, labelEnd, dest, destStart, destEnd, title, end: k + 1 };
  }

  function skipSpaces(text, i, stop) {
    let k = i;
    while (k < stop && (text[k] === " " || text[k] === "\t" || text[k] === "\n")) k += 1;
    return k;
  }

  // --- the entry point ----------------------------------------------------------------------

  /**
   * `text` as a DocumentFragment of Markdown elements.
   *
   * options.marks: ascending offsets into `text` where a chunk mark goes;
   * options.mark(i): the element for the i-th mark.
   */
  function render(text, options = {}) {
    const fragment = document.createDocumentFragment();
    const pos = new Int32Array(text.length);
    for (let i = 0; i < text.length; i++) pos[i] = i;
    const out = new Output(options.marks || [], options.mark);
    blocks(splitLines({ text, pos, end: text.length }), fragment, out, false);
    out.finish(fragment);
    return fragment;
  }

  globalThis.GeminiMarkdown = Object.freeze({ render, safeUrl });
})();

// Renders TeX with KaTeX for the site build: one JSON request per line on stdin,
// one JSON answer per line on stdout, in order. Started once per build by site_src/katex.py.
//   request:  {"tex": "\\frac{a}{b}", "display": false}
//   answer:   {"html": "<span class=\"katex\">..."}  or  {"error": "KaTeX parse error: ..."}
"use strict";
const katex = require("katex");
const readline = require("readline");

const lines = readline.createInterface({ input: process.stdin, terminal: false });
lines.on("line", (line) => {
  let answer;
  try {
    const request = JSON.parse(line);
    answer = {
      html: katex.renderToString(request.tex, {
        displayMode: request.display,
        throwOnError: true,
        output: request.output || "htmlAndMathml",
        strict: "ignore",
        trust: false,
      }),
    };
  } catch (error) {
    answer = { error: String(error && error.message ? error.message : error) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
});

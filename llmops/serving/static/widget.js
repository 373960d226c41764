/* The llmops feedback widget: ask a registered chain, read the answer and its sources, and
 * give feedback (thumbs, a 1-5 rating, a corrected answer, a comment).
 *
 * One script tag mounts it on any page; it calls the gateway it was loaded from:
 *   <script src="https://GATEWAY/widget.js" data-chain="docs-qa" data-api-key="KEY" async></script>
 * data-chain     the chain to ask (default: the gateway's gateway.widget_chain)
 * data-api-key   a key with the widget scope (chains, and feedback on this visitor's own
 *                answers: safe in a public page), where the gateway requires keys
 * data-target    CSS selector of the element to mount in (default: right after the script tag)
 * data-user      recorded as the feedback's user
 * data-gateway   the gateway's origin (an absolute http(s) URL), when it is not the script's
 * The widget lives in a shadow root, so the page's styles and its own never mix.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script) return;
  // The gateway writes its own settings between these markers when it serves this file.
  var SERVER = /*defaults*/{"chain": "docs-qa", "authRequired": false}/*defaults*/;
  var opts = script.dataset;
  // An origin and nothing else (scheme://host:port): data-gateway is parsed as a URL, never
  // pasted into markup, so an attribute holding quotes or a path cannot inject anything.
  var origin;
  try {
    var where = opts.gateway ? new URL(opts.gateway) : new URL(script.src, location.href);
    if (where.protocol !== "https:" && where.protocol !== "http:") throw new Error(where.protocol);
    origin = where.origin;
  } catch (err) {
    console.error("llmops widget: data-gateway is not an http(s) URL; the widget is not shown");
    return;
  }
  var chain = opts.chain || SERVER.chain;
  var keyStore = "llmops-widget-key:" + origin;
  var pageShortcuts = opts.shortcuts === "page";

  var TEMPLATE =
    '<section class="widget" aria-labelledby="w-title">' +
    '  <h2 id="w-title">Ask the assistant <span class="chain"></span></h2>' +
    '  <div class="key" hidden>' +
    '    <label for="w-key">API key</label>' +
    '    <input id="w-key" type="password" autocomplete="off" spellcheck="false">' +
    '    <p class="hint">This gateway requires a key (scope widget, or invoke and feedback). It is kept' +
    '      in this browser tab only.</p>' +
    '  </div>' +
    '  <form class="ask">' +
    '    <label for="w-question">Your question</label>' +
    '    <textarea id="w-question" rows="3" aria-keyshortcuts="Control+Enter Meta+Enter"></textarea>' +
    '    <div class="row"><button type="submit" class="primary">Ask</button>' +
    '      <span class="hint"><kbd>Ctrl</kbd>+<kbd>Enter</kbd></span></div>' +
    '  </form>' +
    '  <p class="ask-status" role="status" aria-live="polite"></p>' +
    '  <p class="ask-error error" role="alert" hidden></p>' +
    '  <div class="answer" tabindex="-1" hidden aria-labelledby="w-answer-title">' +
    '    <h3 id="w-answer-title">Answer</h3>' +
    '    <div class="answer-text"></div>' +
    '    <h4>Sources</h4>' +
    '    <ul class="sources"></ul>' +
    '    <p class="versions"></p>' +
    '  </div>' +
    '  <form class="feedback" hidden aria-labelledby="w-fb-title">' +
    '    <h3 id="w-fb-title">Was this answer helpful?</h3>' +
    '    <fieldset class="controls">' +
    '      <div class="thumbs" role="group" aria-label="Thumbs">' +
    '        <button type="button" class="thumb" data-rating="1" aria-pressed="false"' +
    '          aria-keyshortcuts="+" title="Thumbs up (+)">' +
    '          Thumbs up</button>' +
    '        <button type="button" class="thumb" data-rating="-1" aria-pressed="false"' +
    '          aria-keyshortcuts="-" title="Thumbs down (-)">' +
    '          Thumbs down</button>' +
    '      </div>' +
    '      <fieldset class="score">' +
    '        <legend>Rating, 1 (poor) to 5 (excellent), optional</legend>' +
    [1, 2, 3, 4, 5].map(function (n) {
      return '<label><input type="radio" name="score" value="' + n + '" aria-keyshortcuts="' +
        n + '"> ' + n + '</label>';
    }).join("") +
    '      </fieldset>' +
    '      <label for="w-correction">Corrected answer (optional: edit the answer)</label>' +
    '      <textarea id="w-correction" rows="5"></textarea>' +
    '      <label for="w-comment">Comment (optional)</label>' +
    '      <textarea id="w-comment" rows="2"></textarea>' +
    '      <div class="row"><button type="submit" class="primary">Send feedback</button>' +
    '        <span class="hint"><kbd>Ctrl</kbd>+<kbd>Enter</kbd></span></div>' +
    '    </fieldset>' +
    '    <p class="fb-status" role="status" aria-live="polite"></p>' +
    '    <p class="fb-error error" role="alert" hidden></p>' +
    '  </form>' +
    '  <details class="shortcuts">' +
    '    <summary>Keyboard shortcuts</summary>' +
    '    <dl>' +
    '      <dt><kbd>Ctrl</kbd>/<kbd>&#8984;</kbd>+<kbd>Enter</kbd> in the question</dt><dd>ask</dd>' +
    '      <dt><kbd>+</kbd> / <kbd>-</kbd></dt><dd>thumbs up / thumbs down (again: undo)</dd>' +
    '      <dt><kbd>1</kbd>&ndash;<kbd>5</kbd></dt><dd>rating</dd>' +
    '      <dt><kbd>Ctrl</kbd>/<kbd>&#8984;</kbd>+<kbd>Enter</kbd> in the feedback</dt>' +
    '      <dd>send the feedback</dd>' +
    '    </dl>' +
    '    <p class="hint">The single keys work while the cursor is not in a text field.</p>' +
    '  </details>' +
    '</section>';

  function mount() {
    var place = opts.target ? document.querySelector(opts.target) : null;
    if (opts.target && !place) {
      console.error("llmops widget: no element matches data-target " + opts.target);
      return;
    }
    var host = document.createElement("div");
    host.className = "llmops-widget";
    if (place) place.appendChild(host);
    else if (script.parentNode && script.parentNode !== document.head) script.after(host);
    else document.body.appendChild(host);
    var root = host.attachShadow({mode: "open"});
    root.innerHTML = TEMPLATE;  // a constant: every value goes in through textContent
    var style = document.createElement("link");
    style.rel = "stylesheet";
    style.href = origin + "/widget.css";
    root.insertBefore(style, root.firstChild);
    new Widget(host, root);
  }

  function Widget(host, root) {
    var $ = function (sel) { return root.querySelector(sel); };
    var self = this;
    var el = {
      keyBox: $(".key"), key: $("#w-key"), askForm: $(".ask"), question: $("#w-question"),
      askButton: $(".ask button"), askStatus: $(".ask-status"), askError: $(".ask-error"),
      answer: $(".answer"), answerText: $(".answer-text"), sources: $(".sources"),
      versions: $(".versions"), fbForm: $(".feedback"), controls: $(".controls"),
      thumbs: root.querySelectorAll(".thumb"), scores: root.querySelectorAll("input[name=score]"),
      correction: $("#w-correction"), comment: $("#w-comment"), fbStatus: $(".fb-status"),
      fbError: $(".fb-error"), shortcuts: $(".shortcuts")
    };
    var current = null;  // {request_id, answer} of the answer on screen
    var rating = null;

    $(".chain").textContent = "(" + chain + ")";
    el.shortcuts.open = pageShortcuts;
    el.key.value = opts.apiKey || sessionStorage.getItem(keyStore) || "";
    el.keyBox.hidden = !(SERVER.authRequired && !opts.apiKey);
    el.key.addEventListener("input", function () {
      sessionStorage.setItem(keyStore, el.key.value.trim());
    });

    function show(node, message) {
      node.textContent = message || "";
      if (node.getAttribute("role") === "alert") node.hidden = !message;
    }

    // a widget key's session, signed by the gateway: the visitor's answers are its own
    var sessionStore = "llmops-widget-session:" + origin;

    function post(path, body) {
      var headers = {"Content-Type": "application/json"};
      var key = el.key.value.trim();
      if (key) headers.Authorization = "Bearer " + key;
      var session = sessionStorage.getItem(sessionStore);
      if (session) headers["X-Llmops-Session"] = session;
      return fetch(origin + path, {
        method: "POST", headers: headers, body: JSON.stringify(body), credentials: "omit"
      }).catch(function () {
        throw new Error("the assistant at " + origin + " cannot be reached (network error)");
      }).then(function (resp) {
        var given = resp.headers.get("X-Llmops-Session");
        if (given) sessionStorage.setItem(sessionStore, given);
        return resp.json().catch(function () { return null; }).then(function (data) {
          if (resp.ok) return data;
          var message = (data && data.error && data.error.message) || "HTTP " + resp.status;
          var err = new Error(message + " (HTTP " + resp.status + ")");
          err.status = resp.status;
          throw err;
        });
      });
    }

    function needKey(err) {
      if (err.status === 401 || err.status === 403) {
        el.keyBox.hidden = false;
        el.key.focus();
      }
    }

    this.ask = function () {
      var question = el.question.value.trim();
      show(el.askError, "");
      if (!question) {
        show(el.askError, "Type a question first.");
        el.question.focus();
        return;
      }
      el.askButton.disabled = true;
      el.answer.setAttribute("aria-busy", "true");
      show(el.askStatus, "Asking\u2026");
      post("/v1/chains/" + encodeURIComponent(chain) + "/invoke", {question: question})
        .then(function (data) {
          current = {request_id: data.request_id, answer: data.answer || ""};
          render(data);
          show(el.askStatus, "Answer ready. Rate it below.");
          el.answer.focus();
        })
        .catch(function (err) {
          show(el.askStatus, "");
          show(el.askError, "Could not get an answer: " + err.message);
          needKey(err);
        })
        .then(function () {
          el.askButton.disabled = false;
          el.answer.removeAttribute("aria-busy");
        });
    };

    function render(data) {
      el.answerText.textContent = current.answer || "(empty answer)";
      el.sources.textContent = "";
      (data.sources || []).forEach(function (source) {
        var item = document.createElement("li");
        item.textContent = typeof source === "string" ? source
          : source.title || source.source || JSON.stringify(source);
        el.sources.appendChild(item);
      });
      if (!el.sources.children.length) {
        var none = document.createElement("li");
        none.textContent = "(no sources)";
        el.sources.appendChild(none);
      }
      var v = data.versions || {};
      el.versions.textContent = ["chain " + v.chain, v.prompt && "prompt " + v.prompt,
        v.adapter && "adapter " + v.adapter].filter(Boolean).join(" \u00b7 ");
      el.answer.hidden = false;
      resetFeedback();
    }

    function resetFeedback() {
      setRating(null);
      el.scores.forEach(function (input) { input.checked = false; });
      el.correction.value = current.answer;
      el.comment.value = "";
      el.controls.disabled = false;
      el.fbForm.classList.remove("sent");
      show(el.fbStatus, "");
      show(el.fbError, "");
      el.fbForm.hidden = false;
    }

    function setRating(value) {
      rating = value;
      el.thumbs.forEach(function (button) {
        button.setAttribute("aria-pressed", String(Number(button.dataset.rating) === value));
      });
    }

    this.toggleThumb = function (value) { setRating(rating === value ? null : value); };

    this.setScore = function (n) {
      el.scores.forEach(function (input) { input.checked = Number(input.value) === n; });
    };

    this.send = function () {
      if (!current || el.controls.disabled) return;
      var payload = {request_id: current.request_id, source: "web"};
      var checked = root.querySelector("input[name=score]:checked");
      var correction = el.correction.value.trim();
      var comment = el.comment.value.trim();
      if (rating !== null) payload.rating = rating;
      if (checked) payload.score = Number(checked.value);
      if (correction && correction !== current.answer.trim()) payload.correction = correction;
      if (comment) payload.comment = comment;
      if (opts.user) payload.user = opts.user;
      show(el.fbError, "");
      if (!("rating" in payload || "score" in payload || "correction" in payload ||
            "comment" in payload)) {
        show(el.fbError, "Choose thumbs up or down, a rating, a correction or a comment first.");
        return;
      }
      el.controls.disabled = true;
      show(el.fbStatus, "Sending\u2026");
      post("/v1/feedback", payload)
        .then(function () {
          el.fbForm.classList.add("sent");
          show(el.fbStatus, "Thanks \u2014 feedback recorded.");
        })
        .catch(function (err) {
          el.controls.disabled = false;
          show(el.fbStatus, "");
          show(el.fbError, "Feedback not sent: " + err.message + ". Nothing was lost: try again.");
          needKey(err);
        });
    };

    el.askForm.addEventListener("submit", function (e) { e.preventDefault(); self.ask(); });
    el.fbForm.addEventListener("submit", function (e) { e.preventDefault(); self.send(); });
    el.thumbs.forEach(function (button) {
      button.addEventListener("click", function () {
        self.toggleThumb(Number(button.dataset.rating));
      });
    });

    function isTyping(node) {
      if (!node || !node.tagName) return false;
      var tag = node.tagName;
      return tag === "TEXTAREA" || tag === "SELECT" || node.isContentEditable ||
        (tag === "INPUT" && !/^(radio|checkbox|button|submit|reset)$/.test(node.type));
    }

    function onKey(e) {
      var target = e.composedPath()[0];
      var modifier = e.ctrlKey || e.metaKey;
      if (modifier && e.key === "Enter") {
        if (target === el.question) { e.preventDefault(); self.ask(); }
        else if (el.fbForm.contains(target)) { e.preventDefault(); self.send(); }
        return;
      }
      if (modifier || e.altKey || isTyping(target) || el.fbForm.hidden || el.controls.disabled) {
        return;
      }
      if (e.key === "+") self.toggleThumb(1);
      else if (e.key === "-") self.toggleThumb(-1);
      else if (/^[1-5]$/.test(e.key)) self.setScore(Number(e.key));
      else return;
      e.preventDefault();
    }

    root.addEventListener("keydown", onKey);
    if (pageShortcuts) {
      document.addEventListener("keydown", function (e) {
        // keys pressed inside the widget reach the document retargeted to its host
        if (e.target !== host) onKey(e);
      });
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mount);
  else mount();
})();

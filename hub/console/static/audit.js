// The audit browser's one script: verify an entry's RFC 9162 inclusion proof in the browser, with WebCrypto
// SHA-256, against the root of the signed checkpoint shown on the page (the algorithm of audit/merkle.py).
"use strict";

(function () {
  var note = document.getElementById("checkpoint-note");
  var summary = document.getElementById("proof-result");
  if (!note) {
    return;
  }

  function fromBase64(text) {
    var bin = atob(text);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) {
      out[i] = bin.charCodeAt(i);
    }
    return out;
  }

  function concat(parts) {
    var length = parts.reduce(function (n, p) { return n + p.length; }, 0);
    var out = new Uint8Array(length);
    var at = 0;
    parts.forEach(function (p) { out.set(p, at); at += p.length; });
    return out;
  }

  function equal(a, b) {
    if (a.length !== b.length) {
      return false;
    }
    var diff = 0;
    for (var i = 0; i < a.length; i++) {
      diff |= a[i] ^ b[i];
    }
    return diff === 0;
  }

  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }

  // RFC 9162 2.1.1: leaf = SHA-256(0x00 || entry), node = SHA-256(0x01 || left || right).
  function leafHash(entry) { return sha256(concat([Uint8Array.of(0), entry])); }
  function nodeHash(left, right) { return sha256(concat([Uint8Array.of(1), left, right])); }

  // RFC 9162 2.1.3.2, with BigInt so that sizes past 2^31 keep their bits.
  async function verifyInclusion(index, size, leaf, proof, root) {
    if (index < 0n || index >= size) {
      return false;
    }
    var fn = index, sn = size - 1n, r = leaf;
    for (var i = 0; i < proof.length; i++) {
      var p = proof[i];
      if (p.length !== 32 || sn === 0n) {
        return false;
      }
      if ((fn & 1n) === 1n || fn === sn) {
        r = await nodeHash(p, r);
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      } else {
        r = await nodeHash(r, p);
      }
      fn >>= 1n;
      sn >>= 1n;
    }
    return sn === 0n && equal(r, root);
  }

  // The checkpoint body is the note's first three lines: origin, size, base64 root (C2SP tlog-checkpoint).
  function checkpoint() {
    var lines = note.textContent.split("\n");
    if (lines.length < 3 || !/^(0|[1-9][0-9]*)$/.test(lines[1])) {
      throw new Error("the note is not a checkpoint");
    }
    var root = fromBase64(lines[2]);
    if (root.length !== 32) {
      throw new Error("the checkpoint root is not 32 bytes");
    }
    return { size: BigInt(lines[1]), root: root };
  }

  async function verify(button) {
    var row = button.closest("tr");
    var seq = BigInt(button.dataset.seq);
    var cp = checkpoint();
    var url = note.dataset.proofUrl + "?seq=" + seq + "&size=" + cp.size;
    var response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!response.ok) {
      throw new Error("the hub answered " + response.status);
    }
    var proof = await response.json();
    if (BigInt(proof.seq) !== seq || BigInt(proof.size) !== cp.size) {
      return false;
    }
    var leaf = await leafHash(fromBase64(row.dataset.entry));
    return verifyInclusion(seq, cp.size, leaf, proof.proof.map(fromBase64), cp.root);
  }

  function show(button, text, ok) {
    var cell = document.getElementById("result-" + button.dataset.seq);
    [cell, summary].forEach(function (el) {
      el.textContent = el === summary ? "Entry " + button.dataset.seq + ": " + text : text;
      el.classList.toggle("ok", ok);
      el.classList.toggle("bad", !ok);
    });
  }

  document.querySelectorAll("button.verify").forEach(function (button) {
    button.addEventListener("click", function () {
      button.disabled = true;
      show(button, "checking…", true);
      verify(button).then(function (ok) {
        show(button, ok ? "verified" : "failed", ok);
      }, function (error) {
        show(button, "failed (" + error.message + ")", false);
      }).finally(function () {
        button.disabled = false;
      });
    });
  });
})();

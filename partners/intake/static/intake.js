// The intake page: hash the chosen files here (PDQ from a canvas's pixels, SHA-256 by WebCrypto, MD5 of videos)
// and, only when the person confirms, send the hashes (never the files) to this server as JSON.
(function () {
  "use strict";
  var form = document.getElementById("hash-form");
  var input = document.getElementById("files");
  var progress = document.getElementById("progress");
  var review = document.getElementById("review");
  var rows = document.getElementById("hash-rows");
  var summary = document.getElementById("summary");
  var confirmButton = document.getElementById("confirm");
  var sendError = document.getElementById("send-error");
  var done = document.getElementById("done");
  var minQuality = parseInt(form.dataset.minQuality, 10);
  var maxFiles = parseInt(form.dataset.maxFiles, 10);
  var hashes = [];

  function hex(buffer) {
    return Array.prototype.map.call(new Uint8Array(buffer), function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }

  function pixelsOf(file) {
    return createImageBitmap(file).then(function (bitmap) {
      var canvas = document.createElement("canvas");
      canvas.width = bitmap.width;
      canvas.height = bitmap.height;
      var context = canvas.getContext("2d", { willReadFrequently: true });
      context.drawImage(bitmap, 0, 0);
      bitmap.close();
      return context.getImageData(0, 0, canvas.width, canvas.height);
    });
  }

  function hashFile(file, index) {
    return file.arrayBuffer().then(function (bytes) {
      return crypto.subtle.digest("SHA-256", bytes).then(function (digest) {
        var out = [{ file: index, type: "sha256", value: hex(digest) }];
        if (file.type.indexOf("video/") === 0) {
          out.push({ file: index, type: "md5", value: window.HashfedPDQ.md5(bytes) });
          return out;
        }
        return pixelsOf(file).then(function (image) {
          var pdq = window.HashfedPDQ.fromRGBA(image.data, image.width, image.height);
          if (pdq.quality >= minQuality) {
            out.unshift({ file: index, type: "pdq", value: pdq.hash, quality: pdq.quality });
          }
          return out;
        }, function () {
          return out; // not an image this browser can draw: its SHA-256 still protects exact copies
        });
      });
    });
  }

  var LABELS = { pdq: "Look-alike (PDQ)", sha256: "Exact copy (SHA-256)", md5: "Exact video copy (MD5)" };

  function show() {
    rows.textContent = "";
    hashes.forEach(function (h) {
      var tr = document.createElement("tr");
      [String(h.file + 1), LABELS[h.type], h.value.slice(0, 8) + "…"].forEach(function (text) {
        var td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      });
      tr.className = "hash-row";
      rows.appendChild(tr);
    });
    var files = new Set(hashes.map(function (h) { return h.file; })).size;
    summary.textContent = hashes.length + " codes for " + files + " files will be sent. Nothing else.";
    review.hidden = false;
    progress.textContent = "Done: your files were fingerprinted on this device.";
  }

  input.addEventListener("change", function () {
    var files = Array.prototype.slice.call(input.files, 0, maxFiles);
    hashes = [];
    review.hidden = true;
    sendError.textContent = "";
    if (!files.length) return;
    // One file at a time: a large photo's pixels take hundreds of megabytes on a phone.
    var chain = Promise.resolve();
    files.forEach(function (file, index) {
      chain = chain.then(function () {
        progress.textContent = "Making fingerprints on this device: file " + (index + 1) + " of " + files.length + "…";
        return hashFile(file, index).then(function (list) { hashes = hashes.concat(list); });
      });
    });
    chain.then(show, function () {
      progress.textContent = "Something went wrong reading the files. Please try again.";
    });
  });

  confirmButton.addEventListener("click", function () {
    confirmButton.disabled = true;
    sendError.textContent = "";
    var body = JSON.stringify({
      hashes: hashes.map(function (h) {
        return h.type === "pdq" ? { type: h.type, value: h.value, quality: h.quality } : { type: h.type, value: h.value };
      }),
    });
    fetch("/cases", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: body,
      credentials: "omit",
      cache: "no-store",
    }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) throw new Error(data.message || "the case could not be opened");
        return data;
      });
    }).then(function (data) {
      input.value = "";
      hashes = [];
      document.getElementById("choose").hidden = true;
      review.hidden = true;
      document.getElementById("case-number").textContent = data.case_number;
      document.getElementById("case-pin").textContent = data.pin;
      done.hidden = false;
      done.focus();
    }, function (error) {
      sendError.textContent = "Nothing was sent: " + error.message + ".";
      confirmButton.disabled = false;
    });
  });
})();

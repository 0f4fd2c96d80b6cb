/*
 * PDQ (Meta's perceptual image hash) in plain JavaScript, bit-exact with the C++ reference
 * (facebook/ThreatExchange pdq/cpp, as the `pdqhash` Python package runs it) on the same RGB pixels.
 *
 * The reference computes in 32-bit float; every float operation here is rounded with Math.fround so each
 * intermediate value is the one the C++ code holds. Luminance follows `pdqhash.compute`, which takes
 * 0.299 R + 0.587 G + 0.114 B in double precision (numpy) and stores it as float.
 *
 * Exposes window.HashfedPDQ = { fromRGB, fromRGBA, md5 }. fromRGB/fromRGBA return
 * { hash: 64 lowercase hex digits (the reference hasher's format), quality: 0..100 }.
 */
(function (root) {
  "use strict";
  var f = Math.fround;
  var MIN_HASHABLE_DIM = 5;
  var JAROSZ_PASSES = 2;

  // The reference's 16x64 DCT matrix: float(float(sqrt(2/64)) * cos(pi/2/64 * (i+1) * (2j+1))).
  var DCT = (function () {
    var m = new Float32Array(16 * 64);
    var scale = f(Math.sqrt(2.0 / 64));
    for (var i = 0; i < 16; i++) {
      for (var j = 0; j < 64; j++) {
        m[i * 64 + j] = f(scale * Math.cos((Math.PI / 2.0 / 64) * (i + 1) * (2 * j + 1)));
      }
    }
    return m;
  })();

  function windowSize(oldDim, newDim) {
    return Math.floor((oldDim + 2 * newDim - 1) / (2 * newDim));
  }

  // downscaling.cpp box1DFloat: a running-sum box filter whose window shrinks at both ends.
  function box1D(invec, inOff, outvec, outOff, length, stride, fullWindow) {
    var half = Math.floor((fullWindow + 2) / 2);
    var phase1 = half - 1;
    var phase2 = fullWindow - half + 1;
    var phase3 = length - fullWindow;
    var phase4 = half - 1;
    var li = inOff, ri = inOff, oi = outOff;
    var sum = 0;
    var n = 0;
    var i;
    for (i = 0; i < phase1; i++) {
      sum = f(sum + invec[ri]); n++; ri += stride;
    }
    for (i = 0; i < phase2; i++) {
      sum = f(sum + invec[ri]); n++;
      outvec[oi] = f(sum / n);
      ri += stride; oi += stride;
    }
    for (i = 0; i < phase3; i++) {
      sum = f(sum + invec[ri]);
      sum = f(sum - invec[li]);
      outvec[oi] = f(sum / n);
      li += stride; ri += stride; oi += stride;
    }
    for (i = 0; i < phase4; i++) {
      sum = f(sum - invec[li]); n--;
      outvec[oi] = f(sum / n);
      li += stride; oi += stride;
    }
  }

  function jarosz(buf1, buf2, rows, cols, winAlongRows, winAlongCols) {
    for (var rep = 0; rep < JAROSZ_PASSES; rep++) {
      for (var i = 0; i < rows; i++) box1D(buf1, i * cols, buf2, i * cols, cols, 1, winAlongRows);
      for (var j = 0; j < cols; j++) box1D(buf2, j, buf1, j, rows, cols, winAlongCols);
    }
  }

  function decimate(input, rows, cols) {
    var out = new Float32Array(64 * 64);
    for (var oi = 0; oi < 64; oi++) {
      var ii = Math.floor(((oi + 0.5) * rows) / 64);
      for (var oj = 0; oj < 64; oj++) {
        var ij = Math.floor(((oj + 0.5) * cols) / 64);
        out[oi * 64 + oj] = input[ii * cols + ij];
      }
    }
    return out;
  }

  function qualityMetric(b) {
    var sum = 0, i, j, d;
    for (i = 0; i < 63; i++) {
      for (j = 0; j < 64; j++) {
        d = Math.trunc(f(f(f(b[i * 64 + j] - b[(i + 1) * 64 + j]) * 100) / 255));
        sum += Math.abs(d);
      }
    }
    for (i = 0; i < 64; i++) {
      for (j = 0; j < 63; j++) {
        d = Math.trunc(f(f(f(b[i * 64 + j] - b[i * 64 + j + 1]) * 100) / 255));
        sum += Math.abs(d);
      }
    }
    var q = Math.floor(sum / 90);
    return q > 100 ? 100 : q;
  }

  // B = D A D^T, summed in the reference's order (k ascending) in float.
  function dct64To16(a) {
    var t = new Float32Array(16 * 64);
    var b = new Float32Array(16 * 16);
    var i, j, k, s;
    for (i = 0; i < 16; i++) {
      for (j = 0; j < 64; j++) {
        s = 0;
        for (k = 0; k < 64; k++) s = f(s + f(DCT[i * 64 + k] * a[k * 64 + j]));
        t[i * 64 + j] = s;
      }
    }
    for (i = 0; i < 16; i++) {
      for (j = 0; j < 16; j++) {
        s = 0;
        for (k = 0; k < 64; k++) s = f(s + f(t[i * 64 + k] * DCT[j * 64 + k]));
        b[i * 16 + j] = s;
      }
    }
    return b;
  }

  // torben.cpp: the median without sorting, as the reference picks it (ties included).
  function torben(m) {
    var n = m.length, i;
    var min = m[0], max = m[0];
    for (i = 1; i < n; i++) {
      if (m[i] < min) min = m[i];
      if (m[i] > max) max = m[i];
    }
    var less, greater, equal, guess, maxlt, mingt;
    var half = Math.floor((n + 1) / 2);
    for (;;) {
      guess = f(f(min + max) / 2);
      less = 0; greater = 0; equal = 0;
      maxlt = min; mingt = max;
      for (i = 0; i < n; i++) {
        if (m[i] < guess) {
          less++;
          if (m[i] > maxlt) maxlt = m[i];
        } else if (m[i] > guess) {
          greater++;
          if (m[i] < mingt) mingt = m[i];
        } else {
          equal++;
        }
      }
      if (less <= half && greater <= half) break;
      else if (less > greater) max = maxlt;
      else min = mingt;
    }
    if (less >= half) return maxlt;
    if (less + equal >= half) return guess;
    return mingt;
  }

  function hex4(w) {
    return ("0000" + w.toString(16)).slice(-4);
  }

  // Hash256 bit k = bit k%16 of word k/16; the reference prints word 15 first.
  function toHex(b) {
    var median = torben(b);
    var out = "";
    for (var i = 15; i >= 0; i--) {
      var w = 0;
      for (var j = 0; j < 16; j++) if (b[i * 16 + j] > median) w |= 1 << j;
      out += hex4(w);
    }
    return out;
  }

  function fromLuma(luma, rows, cols) {
    if (rows < MIN_HASHABLE_DIM || cols < MIN_HASHABLE_DIM) {
      return { hash: new Array(65).join("0"), quality: 0 };
    }
    var b64;
    if (rows === 64 && cols === 64) {
      b64 = luma;
    } else {
      var buf2 = new Float32Array(rows * cols);
      jarosz(luma, buf2, rows, cols, windowSize(cols, 64), windowSize(rows, 64));
      b64 = decimate(luma, rows, cols);
    }
    var quality = qualityMetric(b64);
    return { hash: toHex(dct64To16(b64)), quality: quality };
  }

  function luma(pixels, width, height, channels) {
    var out = new Float32Array(width * height);
    for (var p = 0, q = 0; p < out.length; p++, q += channels) {
      out[p] = f(pixels[q] * 0.299 + pixels[q + 1] * 0.587 + pixels[q + 2] * 0.114);
    }
    return out;
  }

  function fromRGB(rgb, width, height) {
    return fromLuma(luma(rgb, width, height, 3), height, width);
  }

  function fromRGBA(rgba, width, height) {
    return fromLuma(luma(rgba, width, height, 4), height, width);
  }

  // MD5 (RFC 1321) of an ArrayBuffer, for video files, which WebCrypto does not offer.
  var S = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];
  var K = (function () {
    var k = new Int32Array(64);
    for (var i = 0; i < 64; i++) k[i] = Math.floor(Math.abs(Math.sin(i + 1)) * 4294967296) | 0;
    return k;
  })();

  function md5(buffer) {
    var bytes = new Uint8Array(buffer);
    var n = bytes.length;
    var padded = new Uint8Array(((n + 8) >>> 6) * 64 + 64);
    padded.set(bytes);
    padded[n] = 0x80;
    var bitsLow = (n * 8) >>> 0;
    var bitsHigh = Math.floor(n / 536870912) >>> 0;
    var end = padded.length;
    var view = new DataView(padded.buffer);
    view.setUint32(end - 8, bitsLow, true);
    view.setUint32(end - 4, bitsHigh, true);
    var a0 = 0x67452301 | 0, b0 = 0xefcdab89 | 0, c0 = 0x98badcfe | 0, d0 = 0x10325476 | 0;
    var m = new Int32Array(16);
    for (var off = 0; off < end; off += 64) {
      for (var w = 0; w < 16; w++) m[w] = view.getInt32(off + w * 4, true);
      var a = a0, b = b0, c = c0, d = d0;
      for (var i = 0; i < 64; i++) {
        var fv, g;
        if (i < 16) { fv = (b & c) | (~b & d); g = i; }
        else if (i < 32) { fv = (d & b) | (~d & c); g = (5 * i + 1) % 16; }
        else if (i < 48) { fv = b ^ c ^ d; g = (3 * i + 5) % 16; }
        else { fv = c ^ (b | ~d); g = (7 * i) % 16; }
        fv = (fv + a + K[i] + m[g]) | 0;
        a = d; d = c; c = b;
        var s = S[(i >> 4) * 4 + (i & 3)];
        b = (b + ((fv << s) | (fv >>> (32 - s)))) | 0;
      }
      a0 = (a0 + a) | 0; b0 = (b0 + b) | 0; c0 = (c0 + c) | 0; d0 = (d0 + d) | 0;
    }
    var out = "";
    [a0, b0, c0, d0].forEach(function (x) {
      for (var k = 0; k < 4; k++) out += ("0" + ((x >>> (8 * k)) & 0xff).toString(16)).slice(-2);
    });
    return out;
  }

  root.HashfedPDQ = { fromRGB: fromRGB, fromRGBA: fromRGBA, md5: md5 };
})(typeof window !== "undefined" ? window : globalThis);

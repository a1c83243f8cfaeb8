/* The review page's player: Media Source Extensions fed with keyframe-aligned pieces of the
 * recorded segments (fragmented MP4, see exports/media/playback.py), a zoomable timeline and
 * frame-exact In/Out marks.
 *
 * One media timeline for the whole archive: media time = (wall time - origin) / 1000, so
 * segment joins are contiguous in the SourceBuffer and play without a stall, gaps are holes
 * the player jumps over, and requestVideoFrameCallback's mediaTime names the exact recorded
 * frame on screen. All times here are milliseconds since the epoch (floats: microseconds).
 */
(function () {
  "use strict";
  var root = document.getElementById("review");
  if (!root) return;

  var $ = function (id) { return document.getElementById(id); };
  var video = $("player");
  var zone = root.dataset.zone;
  var firstMs = Number(root.dataset.first), lastMs = Number(root.dataset.last);
  var origin = Math.floor(((firstMs || Number(root.dataset.at)) - 60000) / 1000) * 1000;
  var pieceBase = root.dataset.pieceUrl.replace(/0\/0\.mp4$/, "");
  // ?proxy=1 on the page's URL plays everything through the H.264 proxy (for a browser that
  // cannot play a recording's own H.264 profile, and for the benchmark).
  var forceProxy = new URLSearchParams(window.location.search).get("proxy") === "1";
  var AHEAD_S = 8;          // media seconds to keep buffered ahead (times the speed)
  var GAP_MARK_MS = 500;    // a hole longer than this is announced as a gap
  var ZOOMS = [86400e3, 43200e3, 21600e3, 10800e3, 3600e3, 1800e3, 600e3, 300e3, 60e3];
  var ZOOM_NAMES = ["24 h", "12 h", "6 h", "3 h", "1 h", "30 min", "10 min", "5 min", "1 min"];

  var state = {
    segments: [],          // sorted by start, from the index
    spans: [], gaps: [], exports: [],
    loaded: null,          // [from, to] the index covers
    pieces: {},            // "segId:index" -> {seg, index, start, end, last} (wall ms)
    fetching: {},          // "segId:index" or "segId@at" -> Promise
    shown: null,           // wall ms of the frame on screen
    shownSeg: null,
    markIn: null, markOut: null,   // {start, dur} of the marked frames
    zoom: 6, viewStart: 0,
    playing: false, speed: 1,
    gapNotice: null,
  };

  // -- formatting ---------------------------------------------------------------------------
  var pad = function (n, w) { n = String(n); while (n.length < (w || 2)) n = "0" + n; return n; };
  var partsFmt = new Intl.DateTimeFormat("en-GB", { timeZone: zone, hourCycle: "h23",
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
  function localText(ms) {
    var p = {};
    partsFmt.formatToParts(new Date(Math.floor(ms))).forEach(function (x) { p[x.type] = x.value; });
    return p.year + "-" + p.month + "-" + p.day + " " + p.hour + ":" + p.minute + ":" + p.second +
      "." + pad(Math.floor(((ms % 1000) + 1000) % 1000), 3);
  }
  function utcText(ms) {
    var d = new Date(Math.floor(ms));
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " +
      pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds()) + "." +
      pad(Math.floor(((ms % 1000) + 1000) % 1000), 3) + " UTC";
  }
  function isoZ(ms) { return new Date(ms).toISOString(); }
  function secondsText(s) {
    if (s < 60) return s.toFixed(s < 10 ? 3 : 1) + " s";
    var m = Math.floor(s / 60); return m + " min " + pad(Math.round(s - m * 60)) + " s";
  }
  var hmFmt = new Intl.DateTimeFormat("en-GB", { timeZone: zone, hourCycle: "h23", hour: "2-digit", minute: "2-digit" });
  var hmsFmt = new Intl.DateTimeFormat("en-GB", { timeZone: zone, hourCycle: "h23", hour: "2-digit", minute: "2-digit", second: "2-digit" });

  // -- the index ----------------------------------------------------------------------------
  function loadIndex(from, to) {
    var url = root.dataset.indexUrl + "?from=" + encodeURIComponent(isoZ(from)) + "&to=" + encodeURIComponent(isoZ(to));
    return fetch(url, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) throw new Error("index " + r.status);
      return r.json();
    }).then(function (body) {
      var byId = {};
      state.segments.forEach(function (s) { byId[s.id] = s; });
      body.segments.forEach(function (s) { byId[s.id] = s; });
      state.segments = Object.keys(byId).map(function (k) { return byId[k]; })
        .sort(function (a, b) { return a.start - b.start; });
      state.spans = body.spans; state.gaps = body.gaps; state.exports = body.exports;
      state.pieceMs = body.pieceSeconds * 1000;
      state.proxyPieceMs = body.proxyPieceSeconds * 1000;
      state.loaded = [body.from, body.to];
      drawTimeline();
    });
  }
  function ensureIndex(from, to) {
    if (state.loaded && state.loaded[0] <= from && state.loaded[1] >= to) return Promise.resolve();
    // At least an hour either side, so seeks nearby need no index request.
    var width = Math.max(to - from, 3600e3);
    return loadIndex(from - width, to + width);
  }
  function segmentAt(ms) {
    var segs = state.segments;
    for (var i = 0; i < segs.length; i++) if (segs[i].start <= ms && ms < segs[i].end) return segs[i];
    return null;
  }
  function segmentAfter(ms) {
    var segs = state.segments;
    for (var i = 0; i < segs.length; i++) if (segs[i].start >= ms - 1) return segs[i];
    return null;
  }
  function segmentBefore(ms) {
    var found = null;
    state.segments.forEach(function (s) { if (s.end <= ms + 1) found = s; });
    return found;
  }
  function frameMs(seg) { return 1000 / ((seg && seg.fps) || 25); }

  // -- Media Source -------------------------------------------------------------------------
  var mediaSource = new MediaSource();
  var sourceBuffer = null, bufferType = null, appendQueue = [];
  var opened = new Promise(function (resolve) { mediaSource.addEventListener("sourceopen", resolve, { once: true }); });
  video.src = URL.createObjectURL(mediaSource);
  opened.then(function () { mediaSource.duration = ((lastMs || Date.now()) - origin) / 1000 + 86400; });

  function append(data, offset, type) {
    return opened.then(function () {
      return new Promise(function (resolve, reject) {
        appendQueue.push({ data: data, offset: offset, type: type, resolve: resolve, reject: reject });
        pump();
      });
    });
  }
  function pump() {
    if (!appendQueue.length || (sourceBuffer && sourceBuffer.updating)) return;
    var job = appendQueue.shift();
    try {
      if (!sourceBuffer) {
        sourceBuffer = mediaSource.addSourceBuffer(job.type);
        bufferType = job.type;
        sourceBuffer.mode = "segments";
        sourceBuffer.addEventListener("updateend", pump);
      } else if (job.type !== bufferType && sourceBuffer.changeType) {
        sourceBuffer.changeType(job.type);
        bufferType = job.type;
      }
      sourceBuffer.timestampOffset = job.offset;
      sourceBuffer.addEventListener("updateend", function done() {
        sourceBuffer.removeEventListener("updateend", done);
        job.resolve();
      });
      sourceBuffer.appendBuffer(job.data);
    } catch (error) {
      if (error.name === "QuotaExceededError") { evict(); appendQueue.unshift(job); setTimeout(pump, 50); return; }
      job.reject(error);
      pump();
    }
  }
  function evict() {
    // Keep a minute behind the playhead; drop the rest before it and far ahead of it.
    if (!sourceBuffer || sourceBuffer.updating) return;
    var now = video.currentTime, b = sourceBuffer.buffered;
    if (b.length && b.start(0) < now - 60) {
      sourceBuffer.remove(b.start(0), now - 60);
      for (var key in state.pieces) if (state.pieces[key].end < origin + (now - 60) * 1000) delete state.pieces[key];
    }
  }

  // -- pieces -------------------------------------------------------------------------------
  function pieceMsOf(seg) { return seg.proxy || forceProxy ? state.proxyPieceMs : state.pieceMs; }
  function isBuffered(ms) {
    if (!sourceBuffer) return false;
    var t = wallToMedia(ms), b = sourceBuffer.buffered;
    for (var i = 0; i < b.length; i++) if (b.start(i) - 0.001 <= t && t < b.end(i)) return true;
    return false;
  }
  function pieceCovering(ms) {
    for (var key in state.pieces) {
      var p = state.pieces[key];
      if (p.start <= ms && ms < p.end) {
        // The browser may have evicted it to make room for newer pieces: fetch it again.
        if (isBuffered(ms) || isBuffered(Math.min(p.end - 1, ms + 40))) return p;
        delete state.pieces[key];
        return null;
      }
    }
    return null;
  }
  function loadPiece(seg, index, atMs) {
    var key = seg.id + ":" + index;
    if (state.pieces[key]) return Promise.resolve(state.pieces[key]);
    if (state.fetching[key]) return state.fetching[key];
    var url = pieceBase + seg.id + "/" + index + ".mp4?audio=0" + (forceProxy ? "&proxy=1" : "");
    if (atMs != null) url += "&at=" + ((atMs - seg.start) / 1000).toFixed(6);
    var promise = fetch(url, { credentials: "same-origin" }).then(function (r) {
      if (r.status === 503) return new Promise(function (res) { setTimeout(res, 1000); }).then(function () {
        delete state.fetching[key]; return loadPiece(seg, index, atMs);
      });
      if (!r.ok) throw new Error("piece " + r.status);
      var h = r.headers;
      var got = Number(h.get("X-Piece-Index"));
      var piece = { seg: seg, index: got, start: seg.start + Number(h.get("X-Piece-Start")) * 1000,
                    end: seg.start + Number(h.get("X-Piece-End")) * 1000, last: h.get("X-Piece-Last") === "1",
                    technique: h.get("X-Piece-Technique") };
      var type = 'video/mp4; codecs="' + h.get("X-Codecs") + '"';
      return r.arrayBuffer().then(function (data) {
        var existing = state.pieces[seg.id + ":" + got];
        if (existing) return existing;
        return append(data, (piece.start - origin) / 1000, type).then(function () {
          state.pieces[seg.id + ":" + got] = piece;
          return piece;
        });
      });
    });
    state.fetching[key] = promise;
    promise.then(function () { delete state.fetching[key]; }, function () { delete state.fetching[key]; });
    return promise;
  }
  function loadAt(ms) {
    var seg = segmentAt(ms);
    if (!seg) return Promise.resolve(null);
    var have = pieceCovering(ms);
    if (have) return Promise.resolve(have);
    var index = Math.floor((ms - seg.start) / pieceMsOf(seg));
    return loadPiece(seg, index, ms);
  }
  function nextPieceOf(piece) {
    if (!piece.last) return { seg: piece.seg, index: piece.index + 1 };
    var next = segmentAfter(piece.seg.end - 1);
    if (next && next.id === piece.seg.id) next = segmentAfter(piece.seg.end);
    return next ? { seg: next, index: 0 } : null;
  }
  var idleTimer = null;
  function prefetch() {
    // Paused, the next piece is fetched only once the user has stopped seeking for a moment:
    // a seek's own piece must not queue behind pieces of the position it leaves.
    if (!state.playing) {
      clearTimeout(idleTimer);
      idleTimer = setTimeout(function () { if (!video.seeking) fetchAhead(); }, 400);
      return;
    }
    fetchAhead();
  }
  function fetchAhead() {
    var now = state.shown != null ? state.shown : mediaToWall(video.currentTime);
    var horizon = now + AHEAD_S * 1000 * Math.max(1, state.speed);
    var piece = pieceCovering(now);
    var guard = 0;
    while (piece && piece.end < horizon && guard++ < 8) {
      var next = nextPieceOf(piece);
      if (!next) { ensureIndex(piece.end, piece.end + 3600e3); return; }
      var known = state.pieces[next.seg.id + ":" + next.index];
      if (!known) {
        if (Object.keys(state.fetching).length < 2) loadPiece(next.seg, next.index, null).then(fetchAhead, function () {});
        return;
      }
      piece = known;
    }
  }

  // -- time mapping, the clock --------------------------------------------------------------
  function wallToMedia(ms) { return (ms - origin) / 1000; }
  function mediaToWall(t) { return origin + t * 1000; }
  function onFrame(now, meta) {
    showFrame(mediaToWall(meta.mediaTime));
    video.requestVideoFrameCallback(onFrame);
  }
  if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(onFrame);
  else video.addEventListener("timeupdate", function () { showFrame(mediaToWall(video.currentTime)); });

  function showFrame(wall) {
    // The frame's recorded time: round away float noise below a microsecond.
    wall = Math.round(wall * 1000) / 1000;
    state.shown = wall;
    state.shownSeg = segmentAt(wall + 0.5) || state.shownSeg;
    $("clock-local").textContent = localText(wall);
    $("clock-utc").textContent = utcText(wall);
    root.dataset.shown = String(wall);
    $("loading").hidden = true;
    followPlayhead();
    drawPlayhead();
    prefetch();
  }

  // -- seeking, playing, stepping -----------------------------------------------------------
  var seekSerial = 0;
  function seek(ms, keepPlaying, skippingGap) {
    var mine = ++seekSerial;
    clearTimeout(idleTimer);
    if (!skippingGap) $("gap-marker").hidden = true;
    var seg = segmentAt(ms);
    return ensureIndex(ms - 60e3, ms + 60e3).then(function () {
      seg = segmentAt(ms);
      if (!seg) {
        var next = segmentAfter(ms);
        $("no-recording").hidden = false;
        if (!next) { pause(); return; }
        ms = next.start; seg = next;
      }
      $("no-recording").hidden = true;
      $("loading").hidden = false;
      return loadAt(ms).then(function () {
        if (mine !== seekSerial) return;
        video.currentTime = wallToMedia(ms) + 0.0005;
        if (keepPlaying && state.playing) video.play().catch(function () {});
      });
    }).catch(function (error) { $("loading").hidden = true; console.error(error); });
  }
  function play() {
    state.playing = true;
    $("play").textContent = "⏸︎ Pause"; $("play").setAttribute("aria-label", "Pause");
    video.playbackRate = state.speed;
    video.play().catch(function () {});
    prefetch();
  }
  function pause() {
    state.playing = false;
    $("play").textContent = "▶︎ Play"; $("play").setAttribute("aria-label", "Play");
    video.pause();
  }
  function step(direction) {
    pause();
    if (state.shown == null) return;
    var seg = state.shownSeg || segmentAt(state.shown);
    var target = state.shown + direction * frameMs(seg);
    if (direction > 0 && seg && target >= seg.end - 0.01) {
      var next = segmentAfter(seg.end - 0.5);
      if (next && next.id === seg.id) next = segmentAfter(seg.end + 0.5);
      if (!next) return;
      target = next.start;
    } else if (direction < 0 && seg && target < seg.start - 0.01) {
      var prev = segmentBefore(seg.start);
      if (!prev) return;
      target = prev.end - frameMs(prev);
    }
    seek(target, false);
  }
  function setSpeed(value) {
    state.speed = value;
    $("speed").value = String(value);
    video.playbackRate = value;
  }

  // Gaps: when playback reaches the end of what is buffered, jump to the next recording.
  function watchForHoles() {
    if (state.playing && sourceBuffer && !video.seeking) {
      var t = video.currentTime, b = sourceBuffer.buffered, end = null;
      for (var i = 0; i < b.length; i++) if (b.start(i) <= t + 0.05 && t < b.end(i) + 0.05) end = b.end(i);
      var wallEnd = end != null ? mediaToWall(end) : null;
      if (wallEnd != null && t >= end - 0.12) {
        var next = segmentAfter(wallEnd - 1);
        if (next && next.start > wallEnd + 1) {
          announceGap(wallEnd, next.start);
          seek(next.start, true, true);
        } else if (next && !pieceCovering(next.start + 1)) {
          loadPiece(next, 0, null);
        } else if (!next) {
          ensureIndex(wallEnd, wallEnd + 3600e3);
        }
      }
    }
    requestAnimationFrame(watchForHoles);
  }
  requestAnimationFrame(watchForHoles);
  function announceGap(from, to) {
    var seconds = (to - from) / 1000;
    if (to - from < GAP_MARK_MS) return;
    var marker = $("gap-marker");
    marker.textContent = "Gap of " + secondsText(seconds) + " skipped (no recording " +
      hmsFmt.format(new Date(from)) + " – " + hmsFmt.format(new Date(to)) + ")";
    marker.hidden = false;
    root.dataset.lastGap = String(seconds);
    clearTimeout(state.gapNotice);
    state.gapNotice = setTimeout(function () { marker.hidden = true; }, 4000);
  }
  video.addEventListener("waiting", function () { if (state.playing) $("loading").hidden = false; });
  video.addEventListener("playing", function () { $("loading").hidden = true; });

  // -- marks and export ---------------------------------------------------------------------
  function mark(which) {
    if (state.shown == null) return;
    pause();
    var frame = { start: state.shown, dur: frameMs(state.shownSeg) };
    if (which === "in") state.markIn = frame; else state.markOut = frame;
    if (state.markIn && state.markOut && state.markOut.start < state.markIn.start) {
      if (which === "in") state.markOut = null; else state.markIn = null;
    }
    drawMarks();
  }
  // The engine keeps a frame when it starts before To and ends after From. From is the In
  // frame's start and To the Out frame's end, rounded to whole milliseconds inwards, so float
  // noise can neither add the frame before In nor the one after Out.
  function exportRange() {
    var from = Math.ceil(state.markIn.start - 0.01);
    var to = Math.floor(state.markOut.start + state.markOut.dur + 0.01);
    return [from, to];
  }
  function drawMarks() {
    var i = state.markIn, o = state.markOut;
    $("in-text").textContent = i ? localText(i.start) : "—";
    $("out-text").textContent = o ? localText(o.start) : "—";
    var ready = Boolean(i && o);
    $("export").disabled = !ready;
    if (ready) {
      var range = exportRange();
      $("export-start").value = isoZ(range[0]);
      $("export-end").value = isoZ(range[1]);
      $("length-text").textContent = secondsText((range[1] - range[0]) / 1000) + ", " +
        Math.round((o.start - i.start) / o.dur + 1) + " frames";
      $("open-form").href = root.dataset.formUrl + "?camera=" + encodeURIComponent(root.dataset.camera) +
        "&from=" + encodeURIComponent(isoZ(range[0])) + "&to=" + encodeURIComponent(isoZ(range[1]));
    } else {
      $("length-text").textContent = "—";
    }
    drawSelection();
  }

  // -- timeline -----------------------------------------------------------------------------
  var track = $("rtrack");
  function span() { return ZOOMS[state.zoom]; }
  function xOf(ms) { return (ms - state.viewStart) / span() * 100; }
  function msAtClientX(x) {
    var box = track.getBoundingClientRect();
    return state.viewStart + Math.min(1, Math.max(0, (x - box.left) / box.width)) * span();
  }
  function place(el, a, b) {
    var left = Math.max(0, xOf(a)), right = Math.min(100, xOf(b));
    el.style.left = left + "%"; el.style.width = Math.max(0.15, right - left) + "%";
    el.hidden = right <= 0 || left >= 100;
  }
  function centerOn(ms) { state.viewStart = ms - span() / 2; }
  function followPlayhead() {
    if (state.dragging || state.shown == null) return;
    var x = xOf(state.shown);
    if (x < 0 || x > 100) { centerOn(state.shown); drawTimeline(); }
  }
  function drawTimeline() {
    var rec = $("lane-rec"); rec.textContent = "";
    state.gaps.forEach(function (g) {
      var el = document.createElement("span"); el.className = "gap"; place(el, g[0], g[1]);
      el.title = "No recording, " + secondsText((g[1] - g[0]) / 1000); rec.appendChild(el);
    });
    state.spans.forEach(function (s) {
      var el = document.createElement("span"); el.className = "rec"; place(el, s[0], s[1]); rec.appendChild(el);
    });
    var lane = $("lane-exports"); lane.textContent = "";
    state.exports.forEach(function (e) {
      var a = document.createElement("a"); a.className = "export-bar"; a.href = e.url;
      a.title = "Export " + localText(e.start) + " – " + localText(e.end) + " (" + e.state + ")";
      place(a, e.start, e.end); lane.appendChild(a);
    });
    drawTicks(); drawSelection(); drawPlayhead();
    $("zoom-label").textContent = ZOOM_NAMES[state.zoom];
    ensureIndex(state.viewStart, state.viewStart + span()).catch(function () {});
  }
  function drawTicks() {
    var box = $("rticks"); box.textContent = "";
    var steps = [1e3, 5e3, 10e3, 30e3, 60e3, 300e3, 600e3, 1800e3, 3600e3, 10800e3];
    var want = span() / 8, stepMs = steps[steps.length - 1];
    for (var i = 0; i < steps.length; i++) if (steps[i] >= want) { stepMs = steps[i]; break; }
    // Ticks on whole local minutes/hours: step in UTC from a rounded start (zones offset by
    // whole quarter hours, so steps up to 15 min line up; larger ones are close enough).
    var t = Math.ceil(state.viewStart / stepMs) * stepMs;
    var fmt = stepMs < 60e3 ? hmsFmt : hmFmt;
    for (; t <= state.viewStart + span(); t += stepMs) {
      var el = document.createElement("span"); el.style.left = xOf(t) + "%";
      el.textContent = fmt.format(new Date(t)); box.appendChild(el);
    }
  }
  function drawSelection() {
    var sel = $("selection"), i = state.markIn, o = state.markOut;
    if (!i && !o) { sel.hidden = true; return; }
    var a = i ? i.start : o.start, b = o ? o.start + o.dur : i.start + i.dur;
    place(sel, a, b);
    sel.classList.toggle("open", !(i && o));
  }
  function drawPlayhead() {
    if (state.shown == null) return;
    var x = xOf(state.shown);
    $("playhead").style.left = x + "%";
    $("playhead").hidden = x < 0 || x > 100;
    track.setAttribute("aria-valuenow", String(Math.round(Math.max(0, Math.min(100, x)))));
    track.setAttribute("aria-valuetext", localText(state.shown));
  }
  function zoom(delta) {
    var at = state.shown != null ? state.shown : state.viewStart + span() / 2;
    var fraction = (at - state.viewStart) / span();
    state.zoom = Math.max(0, Math.min(ZOOMS.length - 1, state.zoom + delta));
    state.viewStart = at - fraction * span();
    drawTimeline();
  }
  function pan(direction) { state.viewStart += direction * span() / 2; drawTimeline(); }

  // Drag to scrub (mouse and touch through pointer events); one seek in flight at a time.
  var scrubbing = null;
  function scrubTo(ms) {
    state.shown = ms; drawPlayhead();
    if (scrubbing) { scrubbing.next = ms; return; }
    scrubbing = { next: null };
    seek(ms, false).then(function () {
      var next = scrubbing.next; scrubbing = null;
      if (next != null) scrubTo(next);
    });
  }
  track.addEventListener("pointerdown", function (event) {
    if (event.target.closest("a")) return;
    event.preventDefault();
    track.setPointerCapture(event.pointerId);
    state.dragging = true; state.wasPlaying = state.playing;
    pause();
    scrubTo(msAtClientX(event.clientX));
  });
  track.addEventListener("pointermove", function (event) {
    if (state.dragging) { scrubTo(msAtClientX(event.clientX)); return; }
    if (event.pointerType === "mouse") hoverAt(event.clientX);
  });
  var endDrag = function () {
    if (!state.dragging) return;
    state.dragging = false;
    if (state.wasPlaying) play();
  };
  track.addEventListener("pointerup", endDrag);
  track.addEventListener("pointercancel", endDrag);
  track.addEventListener("pointerleave", function () { $("hover").hidden = true; });

  var hoverTimer = null;
  function hoverAt(clientX) {
    var ms = msAtClientX(clientX), box = track.getBoundingClientRect();
    var hover = $("hover");
    hover.hidden = false;
    hover.style.left = Math.min(box.width - 90, Math.max(0, clientX - box.left - 80)) + "px";
    $("hover-time").textContent = hmsFmt.format(new Date(ms));
    clearTimeout(hoverTimer);
    var img = $("hover-img");
    if (!segmentAt(ms)) { img.hidden = true; return; }
    hoverTimer = setTimeout(function () {
      img.hidden = false;
      img.src = root.dataset.frameUrl + "?t=" + encodeURIComponent(isoZ(ms));
    }, 120);
  }

  // -- wiring -------------------------------------------------------------------------------
  $("play").addEventListener("click", function () { if (state.playing) pause(); else play(); });
  $("step-back").addEventListener("click", function () { step(-1); });
  $("step-forward").addEventListener("click", function () { step(1); });
  $("speed").addEventListener("change", function () { setSpeed(Number($("speed").value)); });
  $("mark-in").addEventListener("click", function () { mark("in"); });
  $("mark-out").addEventListener("click", function () { mark("out"); });
  $("clear-marks").addEventListener("click", function () { state.markIn = state.markOut = null; drawMarks(); });
  $("zoom-in").addEventListener("click", function () { zoom(1); });
  $("zoom-out").addEventListener("click", function () { zoom(-1); });
  $("pan-back").addEventListener("click", function () { pan(-1); });
  $("pan-forward").addEventListener("click", function () { pan(1); });
  video.addEventListener("click", function () { if (state.playing) pause(); else play(); });

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "select" || tag === "textarea") return;
    var key = event.key, handled = true;
    if (key === " " && tag !== "button" && tag !== "a") { if (state.playing) pause(); else play(); }
    else if (key === "k" || key === "K") pause();
    else if (key === "l" || key === "L") {
      if (state.playing) setSpeed(Math.min(16, state.speed * 2)); else { setSpeed(1); play(); }
    }
    else if (key === "j" || key === "J") { if (state.shown != null) seek(state.shown - 5000, true); }
    else if (key === ",") step(-1);
    else if (key === ".") step(1);
    else if (key === "i" || key === "I") mark("in");
    else if (key === "o" || key === "O") mark("out");
    else if (key === "+" || key === "=") zoom(1);
    else if (key === "-" || key === "_" || key === "\u2212") zoom(-1);
    else if ((key === "ArrowLeft" || key === "ArrowRight") && event.target === track && state.shown != null) {
      seek(state.shown + (key === "ArrowLeft" ? -1 : 1) * (event.shiftKey ? 60000 : 1000), false);
    }
    else handled = false;
    if (handled) event.preventDefault();
  });

  // Start at ?t= (the server passed it as data-at), paused on that frame.
  var at = Number(root.dataset.at);
  centerOn(at);
  loadIndex(at - span(), at + span()).then(function () { return seek(at, false); })
    .then(function () { root.dataset.ready = "1"; });

  // For tests and the benchmark: the state the page acts on, read-only.
  window.psimReview = { state: state, seek: seek, play: play, pause: pause, step: step, setSpeed: setSpeed,
                        mark: mark, exportRange: function () { return exportRange(); }, video: video };
})();

/*!
 * safar.js: Safar's first-party web SDK. Plain JavaScript, no build step.
 *
 * Install (the dashboard's Settings -> Install page prints this with your key and host):
 *
 *   <script>
 *     !function(){var s=window.safar=window.safar||[];if(s.initialized)return;
 *     s.methods=["load","identify","track","page","reset","flush"];
 *     s.methods.forEach(function(m){s[m]=function(){s.push([m].concat([].slice.call(arguments)));return s}});
 *     var t=document.createElement("script");t.async=true;t.src="HOST/sdk/safar.js";
 *     document.head.appendChild(t);s.load("WRITE_KEY",{apiHost:"HOST"});s.page()}();
 *   </script>
 *
 * Calls made before the file loads are queued by the stub and replayed in order.
 * Messages follow Segment's spec, so the gateway treats them like any Segment SDK's.
 */
(function (window, document) {
  "use strict";

  var VERSION = "0.1.0";
  var STORAGE = "safar:";
  var FLUSH_AT = 20; // messages
  var FLUSH_INTERVAL = 1000; // ms
  var MAX_QUEUE = 1000; // messages kept while the gateway is unreachable
  var MAX_BEACON_BYTES = 60000; // browsers cap a beacon near 64 KB
  var BACKOFF_MIN = 1000;
  var BACKOFF_MAX = 60000;

  function storageGet(key) {
    try {
      var value = window.localStorage.getItem(STORAGE + key);
      if (value !== null) return JSON.parse(value);
    } catch (e) {
      /* storage may be disabled (private mode); fall back to the cookie */
    }
    var match = document.cookie.match(new RegExp("(?:^|; )" + STORAGE.replace(":", "%3A") + key + "=([^;]*)"));
    return match ? JSON.parse(decodeURIComponent(match[1])) : null;
  }

  function storageSet(key, value) {
    var text = JSON.stringify(value);
    try {
      if (value === null) window.localStorage.removeItem(STORAGE + key);
      else window.localStorage.setItem(STORAGE + key, text);
    } catch (e) {
      /* ignored: the cookie below still keeps ids */
    }
    if (key === "queue") return; // the queue is too big for a cookie
    var name = STORAGE.replace(":", "%3A") + key;
    var expires = value === null ? "Thu, 01 Jan 1970 00:00:00 GMT" : new Date(Date.now() + 365 * 864e5).toUTCString();
    document.cookie = name + "=" + encodeURIComponent(text) + "; path=/; expires=" + expires + "; SameSite=Lax";
  }

  function uuid() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    var hex = Array.prototype.map.call(bytes, function (b) { return (b + 0x100).toString(16).slice(1); }).join("");
    return hex.slice(0, 8) + "-" + hex.slice(8, 12) + "-" + hex.slice(12, 16) + "-" + hex.slice(16, 20) + "-" + hex.slice(20);
  }

  function pageContext() {
    var canonical = document.querySelector("link[rel='canonical']");
    return {
      path: window.location.pathname,
      referrer: document.referrer,
      search: window.location.search,
      title: document.title,
      url: canonical ? canonical.href : window.location.href,
    };
  }

  function Safar() {
    this.writeKey = null;
    this.apiHost = "";
    this.queue = storageGet("queue") || [];
    this.anonymousId = storageGet("anonymous_id");
    this.userId = storageGet("user_id");
    this.traits = storageGet("traits") || {};
    this.backoff = 0;
    this.timer = null;
    this.inFlight = false;
  }

  Safar.prototype.load = function (writeKey, options) {
    options = options || {};
    this.writeKey = writeKey;
    this.apiHost = (options.apiHost || "").replace(/\/$/, "");
    if (!this.anonymousId) {
      this.anonymousId = uuid();
      storageSet("anonymous_id", this.anonymousId);
    }
    var self = this;
    // Page hide is the last moment a page can send: flush what is queued with a beacon.
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "hidden") self.flush({ beacon: true });
    });
    window.addEventListener("pagehide", function () { self.flush({ beacon: true }); });
    this.schedule(0);
    return this;
  };

  Safar.prototype.enqueue = function (message) {
    message.messageId = uuid();
    message.anonymousId = this.anonymousId;
    if (this.userId) message.userId = this.userId;
    message.timestamp = new Date().toISOString();
    message.context = {
      library: { name: "safar.js", version: VERSION },
      page: pageContext(),
      userAgent: window.navigator.userAgent,
      locale: window.navigator.language,
      timezone: (window.Intl && Intl.DateTimeFormat().resolvedOptions().timeZone) || undefined,
      screen: { width: window.screen.width, height: window.screen.height },
    };
    this.queue.push(message);
    if (this.queue.length > MAX_QUEUE) this.queue.splice(0, this.queue.length - MAX_QUEUE);
    storageSet("queue", this.queue);
    this.schedule(this.queue.length >= FLUSH_AT ? 0 : FLUSH_INTERVAL);
    return this;
  };

  Safar.prototype.identify = function (userId, traits) {
    if (userId !== null && typeof userId === "object") {
      traits = userId;
      userId = this.userId;
    }
    if (userId !== undefined && userId !== null) {
      this.userId = String(userId);
      storageSet("user_id", this.userId);
    }
    var merged = this.traits;
    for (var key in traits || {}) if (Object.prototype.hasOwnProperty.call(traits, key)) merged[key] = traits[key];
    this.traits = merged;
    storageSet("traits", merged);
    return this.enqueue({ type: "identify", traits: traits || {} });
  };

  Safar.prototype.track = function (event, properties) {
    if (!event) throw new Error("safar.track: an event name is required");
    return this.enqueue({ type: "track", event: String(event), properties: properties || {} });
  };

  Safar.prototype.page = function (name, properties) {
    if (name !== null && typeof name === "object") {
      properties = name;
      name = undefined;
    }
    var props = pageContext();
    for (var key in properties || {}) if (Object.prototype.hasOwnProperty.call(properties, key)) props[key] = properties[key];
    var message = { type: "page", properties: props };
    if (name) message.name = String(name);
    return this.enqueue(message);
  };

  // Sign-out: forget the user and start a new anonymous identity (what is queued still goes).
  Safar.prototype.reset = function () {
    this.userId = null;
    this.traits = {};
    this.anonymousId = uuid();
    storageSet("user_id", null);
    storageSet("traits", null);
    storageSet("anonymous_id", this.anonymousId);
    return this;
  };

  Safar.prototype.schedule = function (delay) {
    if (this.timer !== null || !this.writeKey) return;
    var self = this;
    this.timer = window.setTimeout(function () {
      self.timer = null;
      self.flush();
    }, Math.max(delay, this.backoff));
  };

  Safar.prototype.body = function (batch) {
    return JSON.stringify({ batch: batch, sentAt: new Date().toISOString(), writeKey: this.writeKey });
  };

  Safar.prototype.flush = function (options) {
    if (!this.writeKey || this.queue.length === 0) return;
    var url = this.apiHost + "/v1/batch";
    if (options && options.beacon && window.navigator.sendBeacon) {
      // A beacon cannot carry headers: the key goes in the body and text/plain avoids a preflight.
      var sent = 0;
      while (sent < this.queue.length) {
        var size = Math.min(this.queue.length - sent, FLUSH_AT);
        var blob = new Blob([this.body(this.queue.slice(sent, sent + size))], { type: "text/plain" });
        if (blob.size > MAX_BEACON_BYTES && size > 1) size = Math.max(1, Math.floor(size / 2));
        else if (!window.navigator.sendBeacon(url, blob)) break;
        else sent += size;
      }
      // A beacon is only handed to the browser, never confirmed. The sent messages leave the
      // page's queue but stay in storage, so if this page is really going away the next page
      // sends them again: at least once, and the warehouse drops repeats by messageId.
      this.queue.splice(0, sent);
      return;
    }
    if (this.inFlight) return;
    this.inFlight = true;
    var batch = this.queue.slice(0, FLUSH_AT);
    var self = this;
    window
      .fetch(url, { method: "POST", headers: { "Content-Type": "text/plain" }, body: this.body(batch), keepalive: true })
      .then(function (response) {
        // 2xx: stored. 4xx other than 429: the gateway will never take these; drop, do not loop.
        if (response.ok || (response.status >= 400 && response.status < 500 && response.status !== 429)) {
          self.queue.splice(0, batch.length);
          storageSet("queue", self.queue);
          self.backoff = 0;
        } else {
          self.retryLater(response.headers.get("Retry-After"));
        }
      })
      .catch(function () { self.retryLater(null); })
      .then(function () {
        self.inFlight = false;
        if (self.queue.length) self.schedule(self.queue.length >= FLUSH_AT ? 0 : FLUSH_INTERVAL);
      });
  };

  Safar.prototype.retryLater = function (retryAfter) {
    var seconds = parseFloat(retryAfter);
    var next = this.backoff ? this.backoff * 2 : BACKOFF_MIN;
    this.backoff = Math.min(BACKOFF_MAX, isNaN(seconds) ? next : Math.max(next, seconds * 1000));
  };

  var existing = window.safar;
  var client = new Safar();
  var api = {
    VERSION: VERSION,
    initialized: true,
    load: function () { client.load.apply(client, arguments); return api; },
    identify: function () { client.identify.apply(client, arguments); return api; },
    track: function () { client.track.apply(client, arguments); return api; },
    page: function () { client.page.apply(client, arguments); return api; },
    reset: function () { client.reset.apply(client, arguments); return api; },
    flush: function () { client.flush.apply(client, arguments); return api; },
    user: function () { return { anonymousId: client.anonymousId, userId: client.userId, traits: client.traits }; },
    queued: function () { return client.queue.length; },
  };
  window.safar = api;
  // Replay what the stub queued before this file loaded, in order.
  if (existing && existing.length) {
    for (var i = 0; i < existing.length; i++) api[existing[i][0]].apply(api, existing[i].slice(1));
  }
})(window, document);

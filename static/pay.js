// The pay page: counts down to the order's expiry and listens to the order's event stream
// (/pay/{no}/events), moving to the success or failure page the moment the order's state is
// final; it polls the shop's status endpoint too — every 10 s while the stream is open, every
// 3 s when it is not (no EventSource, a proxy that cuts it, the shop's limit on streams). A failed
// attempt (PAYERROR) is not final: the shopper may scan again, so the page stays. When the
// shopper comes back to the page (from WeChat, another app or tab), it asks at once rather
// than at the next tick; the shop then asks WeChat if its own record is still unpaid.
// On a phone: back from WeChat's H5 page it asks at once; inside WeChat its button calls
// WeixinJSBridge's getBrandWCPayRequest (whose "ok" is only a hint: the page still asks the
// shop); a phone that can do neither gets a copy-link button.
(function () {
  "use strict";
  var root = document.getElementById("pay");
  if (!root) return;
  var statusUrl = root.dataset.statusUrl;
  var successUrl = root.dataset.successUrl;
  var failedUrl = root.dataset.failedUrl;
  var expiresAt = Number(root.dataset.expiresAt);
  var countdown = document.getElementById("countdown");
  var FAILED = ["CLOSED", "REVOKED"];
  var eventsUrl = root.dataset.eventsUrl;
  var statusLine = document.getElementById("status-line");
  var PAYERROR = "支付未成功，可重新扫码。The payment did not go through — scan again, maybe with another card.";
  var pollEvery = 3000;

  function pad(n) { return n < 10 ? "0" + n : String(n); }
  var warning = document.getElementById("expiry-warning");
  var expired = document.getElementById("expired-notice");
  function tick() {
    var left = Math.max(0, Math.floor((expiresAt - Date.now()) / 1000));
    countdown.textContent = pad(Math.floor(left / 60)) + ":" + pad(left % 60);
    // The last minute is announced once; at the end the code is greyed out and the goods can
    // be bought again (the shop closes the order at WeChat meanwhile).
    if (warning && left <= 60 && left > 0 && warning.hidden) warning.hidden = false;
    if (left === 0 && expired && expired.hidden) {
      if (warning) warning.hidden = true;
      root.classList.add("expired");
      expired.hidden = false;
    }
  }
  tick();
  setInterval(tick, 1000);

  var timer = null;
  var asking = false;
  function next(ms) {
    clearTimeout(timer);
    timer = setTimeout(poll, ms);
  }
  function poll() {
    if (asking) return;
    asking = true;
    fetch(statusUrl, { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (result) {
        asking = false;
        var state = result && result.data && result.data.trade_state;
        if (state === "SUCCESS") { window.location.replace(successUrl); return; }
        if (FAILED.indexOf(state) >= 0) { window.location.replace(failedUrl); return; }
        if (state === "PAYERROR") say(PAYERROR);
        next(pollEvery);
      })
      .catch(function () { asking = false; next(pollEvery); });
  }
  function say(text) {
    if (statusLine && statusLine.textContent !== text) statusLine.textContent = text;
  }

  // The order's changes, pushed the moment the shop applies them.
  if (eventsUrl && window.EventSource) {
    var stream = new EventSource(eventsUrl);
    stream.addEventListener("open", function () { pollEvery = 10000; });
    stream.addEventListener("state", function (e) {
      if (e.data === "paid") { stream.close(); window.location.replace(successUrl); }
      else if (e.data === "closed" || e.data === "refunded") { stream.close(); window.location.replace(failedUrl); }
      else if (e.data === "payerror") say(PAYERROR);
      else if (e.data === "changed") next(0);
    });
    stream.addEventListener("error", function () {
      // Closed by the shop (shutting down, too many streams) or the network: poll as before;
      // the browser reconnects by itself while it can.
      pollEvery = 3000;
      if (stream.readyState === EventSource.CLOSED) next(0);
    });
  }
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") next(0);
  });
  window.addEventListener("pageshow", function (e) { if (e.persisted) next(0); });
  window.addEventListener("focus", function () { next(0); });

  var payJsapi = document.getElementById("pay-jsapi");
  if (payJsapi) {
    payJsapi.addEventListener("click", function () {
      var params = JSON.parse(payJsapi.dataset.params);
      function invoke() {
        window.WeixinJSBridge.invoke("getBrandWCPayRequest", params, function (res) {
          var msg = (res && res.err_msg) || "";
          if (msg === "get_brand_wcpay_request:ok") {
            say("正在确认支付… Confirming your payment…");
            next(0);
          } else if (msg === "get_brand_wcpay_request:cancel") {
            say("已取消，可再次支付。Cancelled; you may pay again.");
          } else {
            say("支付未完成，可再次支付。The payment did not go through; you may try again.");
          }
        });
      }
      if (window.WeixinJSBridge) invoke();
      else document.addEventListener("WeixinJSBridgeReady", invoke, { once: true });
    });
  }

  var copy = document.getElementById("copy-link");
  var link = document.getElementById("page-link");
  if (copy && link) {
    copy.addEventListener("click", function () {
      function copied() { copy.textContent = "已复制 Copied"; }
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(link.value).then(copied, function () {
          link.select(); document.execCommand("copy"); copied();
        });
      } else {
        link.select(); document.execCommand("copy"); copied();
      }
    });
  }

  next(document.getElementById("returned") ? 0 : 3000);
})();

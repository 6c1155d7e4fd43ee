// The pay page: counts down to the order's expiry and polls the shop's status endpoint every
// 3 seconds, moving to the success or failure page when the order's state is final. A failed
// attempt (PAYERROR) is not final: the shopper may scan again, so the page stays.
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

  function pad(n) { return n < 10 ? "0" + n : String(n); }
  function tick() {
    var left = Math.max(0, Math.floor((expiresAt - Date.now()) / 1000));
    countdown.textContent = pad(Math.floor(left / 60)) + ":" + pad(left % 60);
  }
  tick();
  setInterval(tick, 1000);

  function poll() {
    fetch(statusUrl, { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (result) {
        var state = result && result.data && result.data.trade_state;
        if (state === "SUCCESS") { window.location.replace(successUrl); return; }
        if (FAILED.indexOf(state) >= 0) { window.location.replace(failedUrl); return; }
        setTimeout(poll, 3000);
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  setTimeout(poll, 3000);
})();

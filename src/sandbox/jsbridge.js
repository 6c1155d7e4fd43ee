// The wxpay-checkout sandbox's stand-in for the WeChat browser's WeixinJSBridge, served at
// /sandbox/jsbridge.js. A shop's page in sandbox mode loads it, then calls
// WeixinJSBridge.invoke('getBrandWCPayRequest', params, callback) as it would inside WeChat.
// The parameters go to the sandbox that served this script, which checks them as WeChat does;
// a pay sheet drawn over the page stands in for WeChat's. Written for pages with a strict
// Content-Security-Policy: no inline styles or scripts, no eval; every style is set from here.
(function () {
  "use strict";
  if (window.WeixinJSBridge) {
    return;
  }

  var PAY_REQUEST = "get_brand_wcpay_request";
  var script = document.currentScript;
  var origin = script && script.src
    ? new URL(script.src, window.location.href).origin
    : window.location.origin;

  // text/plain keeps the cross-origin POST a simple request (no preflight).
  function post(path, params) {
    return window.fetch(origin + path, {
      method: "POST",
      mode: "cors",
      credentials: "omit",
      headers: { "Content-Type": "text/plain;charset=UTF-8" },
      body: JSON.stringify(params || {})
    }).then(function (response) {
      return response.json();
    });
  }

  function styled(tag, styles, text) {
    var el = document.createElement(tag);
    Object.keys(styles).forEach(function (name) {
      el.style[name] = styles[name];
    });
    if (text !== undefined) {
      el.textContent = text;
    }
    return el;
  }

  function button(id, text, colour, background) {
    var b = styled("button", {
      display: "block",
      width: "100%",
      fontSize: "17px",
      padding: "12px",
      marginTop: "12px",
      border: "0",
      borderRadius: "8px",
      cursor: "pointer",
      color: colour,
      background: background
    }, text);
    b.id = id;
    b.type = "button";
    return b;
  }

  // The sheet: merchant, goods, amount, Pay and Cancel. `onPay` gets a function that closes it.
  function showSheet(info, onPay, onCancel) {
    var overlay = styled("div", {
      position: "fixed",
      left: "0",
      top: "0",
      right: "0",
      bottom: "0",
      zIndex: "2147483647",
      background: "rgba(0,0,0,0.5)",
      display: "flex",
      alignItems: "flex-end",
      justifyContent: "center",
      fontFamily: "system-ui, -apple-system, 'PingFang SC', 'Microsoft YaHei', sans-serif"
    });
    overlay.id = "wx-sandbox-sheet";
    overlay.setAttribute("role", "dialog");
    overlay.setAttribute("aria-modal", "true");
    var sheet = styled("div", {
      background: "#fff",
      color: "#111",
      width: "100%",
      maxWidth: "420px",
      boxSizing: "border-box",
      padding: "20px",
      borderRadius: "12px 12px 0 0",
      textAlign: "center"
    });
    sheet.appendChild(styled("div", {
      display: "inline-block",
      fontSize: "12px",
      color: "#fff",
      background: "#fa9d3b",
      borderRadius: "4px",
      padding: "2px 6px"
    }, "沙箱 Sandbox"));
    sheet.appendChild(styled("div", { fontSize: "15px", marginTop: "12px" }, info.merchant));
    sheet.appendChild(styled("div", { fontSize: "14px", color: "#555", marginTop: "4px" }, info.body));
    var amount = styled("div", { fontSize: "36px", fontWeight: "600", margin: "16px 0" }, "¥" + info.amount);
    amount.id = "wx-sandbox-amount";
    sheet.appendChild(amount);
    var message = styled("div", { fontSize: "14px", color: "#fa5151" });
    var pay = button("wx-sandbox-pay", "支付 Pay", "#fff", "#07c160");
    var cancel = button("wx-sandbox-cancel", "取消 Cancel", "#111", "#f2f2f2");
    sheet.appendChild(message);
    sheet.appendChild(pay);
    sheet.appendChild(cancel);
    overlay.appendChild(sheet);
    document.body.appendChild(overlay);

    function close() {
      if (overlay.parentNode) {
        overlay.parentNode.removeChild(overlay);
      }
    }
    pay.addEventListener("click", function () {
      pay.disabled = true;
      cancel.disabled = true;
      onPay(close);
    });
    cancel.addEventListener("click", function () {
      close();
      onCancel();
    });
  }

  function brandWcPayRequest(params, callback) {
    var cb = typeof callback === "function" ? callback : function () {};
    function fail(desc) {
      cb({ err_msg: PAY_REQUEST + ":fail", err_desc: String(desc) });
    }
    post("/sandbox/jsapi/check", params).then(function (info) {
      if (!info || !info.ok) {
        fail(info && info.err_desc ? info.err_desc : "refused");
        return;
      }
      showSheet(info, function (close) {
        post("/sandbox/jsapi/pay", params).then(function (paid) {
          close();
          if (paid && paid.ok) {
            cb({ err_msg: PAY_REQUEST + ":ok" });
          } else {
            fail(paid && paid.err_desc ? paid.err_desc : "refused");
          }
        }, function (error) {
          close();
          fail(error);
        });
      }, function () {
        cb({ err_msg: PAY_REQUEST + ":cancel" });
      });
    }, fail);
  }

  window.WeixinJSBridge = {
    invoke: function (name, params, callback) {
      if (name === "getBrandWCPayRequest") {
        brandWcPayRequest(params, callback);
      } else if (typeof callback === "function") {
        window.setTimeout(function () {
          callback({ err_msg: name + ":fail" });
        }, 0);
      }
    },
    on: function () {},
    call: function () {}
  };

  // As the real bridge announces itself once injected.
  document.dispatchEvent(new Event("WeixinJSBridgeReady"));
})();

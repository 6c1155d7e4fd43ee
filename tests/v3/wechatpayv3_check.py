#!/usr/bin/env python3
"""An independent WeChat Pay API v3 client against the sandbox: the PyPI package `wechatpayv3`
(2.0.4), unchanged but for its gateway, in public-key mode. It places a Native order, queries
and closes it; pays another (as the shopper, through the sandbox's /sandbox/pay), refunds part
of it and queries the refund until it settles; and downloads the day's trade bill (GZIP), whose
SHA1 it checks. Anything unexpected fails loudly (an exception, exit status 1).

Environment: SANDBOX_BASE (http://127.0.0.1:port), KEY_DIR (apiclient_key.pem, pub_key.pem,
wechatpay_v3.env as `wxpay-checkout sandbox` writes them), APPID, MCHID, NOTIFY_URL.
"""

import datetime
import gzip
import hashlib
import json
import os
import sys
import time
import uuid

import requests
from wechatpayv3 import WeChatPay, WeChatPayType


def env_file(path):
    values = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                name, _, value = line.partition("=")
                values[name.strip()] = value.strip()
    return values


def expect(condition, what):
    if not condition:
        raise AssertionError(what)


def main():
    base = os.environ["SANDBOX_BASE"].rstrip("/")
    key_dir = os.environ["KEY_DIR"]
    v3 = env_file(os.path.join(key_dir, "wechatpay_v3.env"))
    with open(os.path.join(key_dir, "apiclient_key.pem"), encoding="utf-8") as f:
        private_key = f.read()
    with open(os.path.join(key_dir, "pub_key.pem"), encoding="utf-8") as f:
        public_key = f.read()
    mchid = os.environ["MCHID"]

    pay = WeChatPay(
        wechatpay_type=WeChatPayType.NATIVE,
        mchid=mchid,
        private_key=private_key,
        cert_serial_no=v3["WEIXIN_MCH_SERIAL"],
        appid=os.environ["APPID"],
        apiv3_key=v3["WEIXIN_APIV3_KEY"],
        notify_url=os.environ["NOTIFY_URL"],
        public_key=public_key,
        public_key_id=v3["WEIXIN_PAY_PUBLIC_KEY_ID"],
        timeout=(5, 10),
    )
    # The one change: the gateway is the sandbox (every answer is still verified by the SDK
    # with the WeChat Pay public key).
    pay._core._gate_way = base

    run = uuid.uuid4().hex[:12]

    # Native, query, close.
    unpaid = "PY" + run + "A"
    code, message = pay.pay(description="独立客户端 wechatpayv3", out_trade_no=unpaid,
                            amount={"total": 1})
    expect(code == 200, f"native: {code} {message}")
    code_url = json.loads(message)["code_url"]
    expect(code_url.startswith("weixin://wxpay/bizpayurl?pr="), f"code_url {code_url}")
    code, message = pay.query(out_trade_no=unpaid)
    expect(code == 200, f"query: {code} {message}")
    answer = json.loads(message)
    expect(answer["trade_state"] == "NOTPAY", f"query: {answer}")
    expect(answer["amount"]["total"] == 1 and answer["mchid"] == mchid, f"query: {answer}")
    code, message = pay.close(out_trade_no=unpaid)
    expect(code == 204, f"close: {code} {message}")
    code, message = pay.query(out_trade_no=unpaid)
    expect(code == 200 and json.loads(message)["trade_state"] == "CLOSED", f"closed: {message}")
    code, message = pay.query(out_trade_no="PY" + run + "NONE")
    expect(code == 404 and json.loads(message)["code"] == "ORDER_NOT_EXIST",
           f"unknown order: {code} {message}")

    # A paid order, refunded in part.
    paid = "PY" + run + "B"
    code, message = pay.pay(description="独立客户端 paid", out_trade_no=paid,
                            amount={"total": 250, "currency": "CNY"})
    expect(code == 200, f"native: {code} {message}")
    shopper = requests.post(base + "/sandbox/pay",
                            json={"code_url": json.loads(message)["code_url"]}, timeout=10)
    expect(shopper.status_code == 200 and shopper.json()["ok"], f"pay: {shopper.text}")
    code, message = pay.query(out_trade_no=paid)
    answer = json.loads(message)
    expect(code == 200 and answer["trade_state"] == "SUCCESS", f"paid: {code} {message}")
    transaction_id = answer["transaction_id"]
    expect(len(transaction_id) == 28, f"transaction_id {transaction_id}")
    expect(answer["amount"]["payer_total"] == 250, f"paid: {answer}")

    code, message = pay.close(out_trade_no=paid)
    expect(code == 400 and json.loads(message)["code"] == "ORDERPAID",
           f"close of a paid order: {code} {message}")

    out_refund_no = "RPY" + run
    code, message = pay.refund(out_refund_no=out_refund_no, out_trade_no=paid,
                               amount={"refund": 100, "total": 250, "currency": "CNY"},
                               reason="独立客户端退款")
    expect(code == 200, f"refund: {code} {message}")
    refund = json.loads(message)
    expect(refund["status"] in ("PROCESSING", "SUCCESS"), f"refund: {refund}")
    expect(refund["amount"]["refund"] == 100 and refund["transaction_id"] == transaction_id,
           f"refund: {refund}")
    # The same number again is the same refund.
    code, message = pay.refund(out_refund_no=out_refund_no, out_trade_no=paid,
                               amount={"refund": 100, "total": 250, "currency": "CNY"})
    expect(code == 200 and json.loads(message)["refund_id"] == refund["refund_id"],
           f"repeated refund: {code} {message}")
    # More than is left is refused.
    code, message = pay.refund(out_refund_no=out_refund_no + "X", out_trade_no=paid,
                               amount={"refund": 200, "total": 250, "currency": "CNY"})
    expect(code == 400, f"refund past the amount: {code} {message}")

    deadline = time.monotonic() + 10
    while True:
        code, message = pay.query_refund(out_refund_no=out_refund_no)
        expect(code == 200, f"refund query: {code} {message}")
        status = json.loads(message)["status"]
        if status == "SUCCESS":
            break
        expect(status == "PROCESSING", f"refund status {status}")
        expect(time.monotonic() < deadline, "the refund did not settle within 10 s")
        time.sleep(0.05)
    code, message = pay.query_refund(out_refund_no="RPY" + run + "NONE")
    expect(code == 404 and json.loads(message)["code"] == "RESOURCE_NOT_EXISTS",
           f"unknown refund: {code} {message}")

    # Today's trade bill (Beijing), compressed; its SHA1 is the bill's.
    today = (datetime.datetime.now(datetime.timezone.utc)
             + datetime.timedelta(hours=8)).strftime("%Y-%m-%d")
    code, message = pay.trade_bill(bill_date=today)
    expect(code == 200, f"trade bill: {code} {message}")
    bill = json.loads(message)
    expect(bill["hash_type"] == "SHA1", f"bill: {bill}")
    expect(bill["download_url"].startswith(base + "/v3/billdownload/file?token="), f"{bill}")
    code, content = pay.download_bill(bill["download_url"])
    expect(code == 200, f"bill download: {code} {content!r}")
    text = gzip.decompress(content)
    expect(hashlib.sha1(text).hexdigest() == bill["hash_value"].lower(), "the bill's SHA1")
    text = text.decode("utf-8")
    expect(paid in text and out_refund_no in text, "the bill lists the payment and refund")

    print("wechatpayv3 against the sandbox: OK")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - every failure is the check's failure
        print(f"wechatpayv3 check FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)

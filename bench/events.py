"""Realistic Conductor Task events of a chosen size, with or without sensitive keys."""

from __future__ import annotations

import json
import random
from typing import Any


def task_event(size: int, sensitive: bool, seed: int = 0) -> bytes:
    """A Task execution event (the shape of tests/data/conductor/02) padded to about ``size``
    bytes with line items. With ``sensitive``: ``_secrets``/``_masked`` in inputData,
    outputData and workflowTask, as Conductor writes them; without: look-alike names only."""
    rnd = random.Random(seed)
    s, m = ("_secrets", "_masked") if sensitive else ("secrets", "maskedData")
    event: dict[str, Any] = {
        "taskType": "HTTP",
        "status": "COMPLETED",
        "inputData": {
            "http_request": {"uri": "https://api.example.com/v2/charges", "method": "POST"},
            s: {"apiKey": f"sk_live_{rnd.getrandbits(64):016x}"},
            m: {"email": "dana.whitfield@example.com", "phone": "+31 6 1234 5678"},
            "items": [],
        },
        "referenceTaskName": "charge_card_ref",
        "retryCount": 0,
        "seq": 3,
        "correlationId": "ORD-1001",
        "pollCount": 1,
        "taskDefName": "charge_card",
        "scheduledTime": 1767229200300,
        "startTime": 1767229202300,
        "endTime": 1767229209100,
        "workflowInstanceId": "7f3c2a9e-5b1d-4e8a-9c6f-2d4b8e1a0c37",
        "workflowType": "order_checkout",
        "taskId": "c4e2b9a1-7d3f-4e8b-9a6c-1b5d0f2e3a84",
        "outputData": {
            "response": {
                "statusCode": 200,
                "body": {"id": "ch_3PQx9LmN", s: {"clientSecret": "pi_x"}},
            },
            m: {"last4": "4242"},
        },
        "workflowTask": {
            "name": "charge_card",
            "taskReferenceName": "charge_card_ref",
            "inputParameters": {
                s: {"apiKey": "${workflow.secrets.stripe_key}"},
                m: "${workflow.input.customer}",
            },
            "type": "HTTP",
        },
        "workerId": "payments-worker-7c9f4b6d8-m2vzn",
        "domain": "eu-west",
    }
    items = event["inputData"]["items"]
    while len(json.dumps(event)) < size:
        items.append(
            {
                "sku": f"SKU-{rnd.randrange(10**6):06d}",
                "qty": rnd.randrange(1, 9),
                "priceCents": rnd.randrange(100, 10**6),
                "title": rnd.choice(["Café crème", "Widget", "Gadget XL", "Ünïcode ✓"]),
            }
        )
    return json.dumps(event, ensure_ascii=False).encode()

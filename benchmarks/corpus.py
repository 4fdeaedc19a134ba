"""Benchmark corpus: N Bitext- and MultiWOZ-like pairs with the seed's share of waste, as raw_pairs Parquet.

    python benchmarks/corpus.py --pairs 95000 --out .bench/95000/raw_pairs/data.parquet

Shape (the seed: ~95K raw pairs -> ~74.5K, i.e. ~22% removed): 28% Bitext-like rows (one request,
a templated multi-step answer of 60-200 words) and 72% MultiWOZ-like USER->SYSTEM turns (10-30 words),
with planted waste, each a few percent of the rows:
  short       ~8%  "thank you, goodbye" turns and clipped requests   -> word_count_filtered
  over-long   ~2%  answers of 500-800 words (> 580 tokens)          -> token_limit_filtered
  non-English ~2%  French and (space-separated) Chinese pairs        -> english_filtered
  parroting   ~2%  the answer repeats the request                   -> parroting_filtered
  duplicates  ~9%  a recent Bitext-like row with one word edited, or an exact repeat -> dedup
Every clean row carries random slot values (order numbers, times, names), so unrelated rows stay far
below the 0.8 MinHash threshold while planted paraphrases sit above 0.9.

Deterministic for a given (seed, N), generated and written in chunks, so 1M pairs need no more memory
than 50K. All text is written for this benchmark (no Bitext or MultiWOZ sentences).
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import deque
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from llama_sft_dagster.core.data.schema import PAIR_SCHEMA  # noqa: E402

CHUNK = 50_000
BITEXT_SHARE = 0.28
WASTE = {"short": 0.08, "long": 0.02, "foreign": 0.02, "parrot": 0.02, "dup": 0.09}  # shares of all rows

INTENTS = {
    "cancel_order": ("ORDER", "cancel order {ord}", "cancel the order"),
    "track_order": ("ORDER", "track the parcel for order {ord}", "track the parcel"),
    "change_order": ("ORDER", "swap the {prod} in order {ord}", "edit the order"),
    "get_refund": ("REFUND", "get my money back for the {prod}", "request the refund"),
    "check_invoice": ("INVOICE", "see invoice {inv} for {amount}", "view the invoice"),
    "payment_issue": ("PAYMENT", "fix the failed payment of {amount}", "retry the payment"),
    "change_shipping_address": ("SHIPPING", "send order {ord} to {city} instead", "change the address"),
    "recover_password": ("ACCOUNT", "reset the password for {email}", "reset the password"),
    "delivery_period": ("DELIVERY", "know when the {prod} reaches {city}", "see the delivery estimate"),
    "complaint": ("FEEDBACK", "complain about the broken {prod}", "submit the complaint"),
}
ASK = [
    "can you help me {a}?",
    "I would like to {a} please.",
    "how do I {a}?",
    "I need to {a} as soon as possible.",
    "is it possible to {a} today?",
    "could someone explain how I can {a}?",
    "I want to {a}, what should I do?",
]
OPEN = [
    "Thank you for reaching out about {ord}, {name}.",
    "I understand you want to {v} for reference {ref}, and I am glad to help.",
    "Sorry for the trouble with the {prod} you paid {amount} for, {name}.",
    "Happy to help you {v} before {time} today.",
]
STEP = [
    "Sign in to your account with {email} and open {{{{Order History}}}}.",
    "Find the entry for {ord} and select it.",
    "Choose the option to {v} and enter the code {ref} when asked.",
    "Check the email that arrives within {mins} minutes of {time}.",
    "Keep the reference {ref} in case you write to us again.",
    "Make sure the {prod} on invoice {inv} is the right one.",
    "If the button is grey after {time}, refresh the page or use the app.",
    "Our records show {amount} paid on {day} at {time}.",
]
CLOSE = [
    "Call {{{{Customer Support Phone Number}}}} and quote {ref} if anything is unclear.",
    "Let me know if there is anything else, {name}; your case is {ref}.",
    "We hope the {prod} from order {ord} serves you well.",
    "Reply to this message with reference {ref} if you need more help.",
]
DOMAINS = {
    "train": (
        [
            "I need a train from {city} to {city2} on {day} leaving after {time}.",
            "Is there a train to {city2} that arrives by {time} on {day}?",
            "Please book {n} tickets on the {time} train to {city2}.",
            "What is the price of train {ref} from {city}?",
        ],
        [
            "Train {ref} leaves {city} at {time} and arrives at {time2}; the fare is {amount}.",
            "I found {n} trains on {day}; the first departs at {time}.",
            "Booked {n} seats on the {time} service, reference {ref}.",
            "The {time} train costs {amount} and takes {mins} minutes.",
        ],
    ),
    "hotel": (
        [
            "I am looking for a {stars} star hotel in the {area} under {amount} a night.",
            "Can you book the {name} hotel for {n} people from {day}, arriving at {time}?",
            "Does the guesthouse with phone {phone} have free parking?",
            "I need a room for {n} nights starting {day}, my budget is {amount}.",
        ],
        [
            "The {name} guesthouse in the {area} has rooms for {amount} a night; reference {ref}.",
            "Booking was successful for {n} nights; your reference number is {ref}.",
            "They have parking, and you can call them on {phone}.",
            "Check in opens at {time} and the total is {amount}.",
        ],
    ),
    "restaurant": (
        [
            "Find me a {food} restaurant in the {area} for {n} people at {time}.",
            "I want a place serving {food} food near {city} that costs under {amount}.",
            "What is the phone number of the restaurant with reference {ref}?",
            "Book a table for {n} on {day} at {time} please.",
        ],
        [
            "{name} serves {food} food in the {area}; I booked a table for {n} at {time}, reference {ref}.",
            "There are {n} {food} places; a meal costs about {amount}.",
            "Their number is {phone} and they open at {time}.",
            "Your table on {day} at {time} is held for {mins} minutes, reference {ref}.",
        ],
    ),
    "taxi": (
        [
            "Please book a taxi from {name} to {city2} leaving at {time}.",
            "I need a cab to pick me up at {time} and take me to {name}.",
            "Can the taxi with booking {ref} come at {time} instead?",
            "How much is a taxi from {city} to {city2}, about {amount}?",
        ],
        [
            "A {colour} car is booked; it arrives at {time} and the contact number is {phone}.",
            "Your taxi to {city2} will pick you up at {time}, booking {ref}.",
            "The fare should be near {amount}; the driver's phone is {phone}.",
            "I moved booking {ref} to {time}.",
        ],
    ),
}
GOODBYE = [
    ("thank you goodbye", "You are welcome, goodbye."),
    ("that is all thanks", "Have a nice day."),
    ("no thanks", "Enjoy your stay."),
    ("great thanks bye", "Glad I could help you today."),
    ("yes please", "Done, anything else?"),
    ("cancel my order", "Sure, I have cancelled it."),
]
FOREIGN = [
    (
        "Bonjour, je voudrais annuler la commande {ord} s'il vous plaît.",
        "Bien sûr, je peux vous aider. Connectez-vous à votre compte et ouvrez la section des commandes pour {ord}.",
    ),
    (
        "Pouvez-vous m'aider à changer l'adresse de livraison pour {city} ?",
        "Merci pour votre message. Votre demande est enregistrée et vous recevrez une confirmation par courriel.",
    ),
    (
        "你好 我想 取消 订单 {ord} 请问 怎么 操作",
        "您好 感谢 您的 耐心 请 登录 您的 账户 打开 订单 页面 然后 按照 提示 完成 操作",
    ),
    (
        "请问 我的 包裹 什么 时候 能 送到 {city}",
        "非常 抱歉 给您 带来 不便 我们 已经 记录 您的 请求 客服 会在 两天 内 回复",
    ),
]
NAMES = [
    "Ana",
    "Ben",
    "Chloe",
    "Dev",
    "Elena",
    "Farid",
    "Grace",
    "Hugo",
    "Ines",
    "Jonas",
    "Kemi",
    "Liam",
    "Maya",
    "Omar",
]
PRODUCTS = [
    "kettle",
    "desk lamp",
    "backpack",
    "blender",
    "speaker",
    "office chair",
    "rain jacket",
    "headset",
    "toaster",
]
CITIES = [
    "Lisbon",
    "Leeds",
    "Austin",
    "Nairobi",
    "Osaka",
    "Lyon",
    "Perth",
    "Denver",
    "Porto",
    "Quito",
    "Cambridge",
    "Ely",
]
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
FOODS = ["italian", "indian", "chinese", "british", "thai", "spanish", "korean", "turkish"]


def _slots(rng: random.Random) -> dict[str, str]:
    return {
        "ord": f"#{rng.randrange(10**7, 10**8)}",
        "inv": f"INV-{rng.randrange(10**5, 10**6)}",
        "ref": f"{rng.choice('ABCDEFGHJK')}{rng.randrange(10**6, 10**7)}",
        "amount": f"{rng.randrange(5, 900)}.{rng.randrange(10, 99)} EUR",
        "email": f"{rng.choice(NAMES).lower()}{rng.randrange(100, 9999)}@example.com",
        "name": rng.choice(NAMES),
        "prod": rng.choice(PRODUCTS),
        "city": rng.choice(CITIES),
        "city2": rng.choice(CITIES),
        "day": rng.choice(DAYS),
        "time": f"{rng.randrange(5, 23):02d}:{rng.randrange(0, 60):02d}",
        "time2": f"{rng.randrange(5, 23):02d}:{rng.randrange(0, 60):02d}",
        "mins": str(rng.randrange(2, 90)),
        "n": str(rng.randrange(1, 9)),
        "n2": str(rng.randrange(1, 9)),
        "stars": str(rng.randrange(2, 6)),
        "area": rng.choice(["north", "south", "east", "west", "centre"]),
        "food": rng.choice(FOODS),
        "colour": rng.choice(["black", "white", "red", "blue", "grey"]),
        "phone": f"07{rng.randrange(10**8, 10**9)}",
    }


def bitext_pair(rng: random.Random, n_steps: tuple[int, int] = (3, 7)) -> tuple[str, str, str, str]:
    intent = rng.choice(list(INTENTS))
    category, ask, verb = INTENTS[intent]
    s = _slots(rng)
    s["v"] = verb
    s["a"] = ask.format(**s)
    instruction = rng.choice(ASK).format(**s)
    steps = rng.sample(STEP, k=min(rng.randint(*n_steps), len(STEP)))
    parts = [rng.choice(OPEN)] + [f"{i}. {st}" for i, st in enumerate(steps, 1)] + [rng.choice(CLOSE)]
    response = "\n".join(p.format(**(s | _slots(rng) | {"v": verb})) for p in parts)
    return instruction, response, intent, category


def multiwoz_pair(rng: random.Random) -> tuple[str, str, str, str]:
    domain = rng.choice(list(DOMAINS))
    users, systems = DOMAINS[domain]
    s = _slots(rng)
    reply = " ".join(rng.sample(systems, k=rng.randint(1, 2))).format(**s)
    return rng.choice(users).format(**s), reply, f"find_{domain}", domain


def long_pair(rng: random.Random) -> tuple[str, str, str, str]:
    ins, _, intent, cat = bitext_pair(rng)
    s = _slots(rng) | {"v": INTENTS[intent][2]}
    body = " ".join(rng.choice(STEP).format(**(s | _slots(rng))) for _ in range(rng.randint(45, 70)))  # 500-800 words
    return ins, body, intent, cat


def edit_words(rng: random.Random, text: str, k: int) -> str:
    words = text.split(" ")
    for _ in range(k):
        i = rng.randrange(len(words))
        words[i] = rng.choice(["kindly", "really", "now", "pls", words[i].upper(), words[i] + "s"])
    return " ".join(words)


def generate(n_pairs: int, seed: int = 7):
    """Yield pa.Tables of PAIR_SCHEMA rows, CHUNK rows at a time."""
    rng = random.Random(seed)
    recent: deque = deque(maxlen=3000)  # recent clean Bitext-like rows, sources of paraphrase clusters
    kinds, weights = list(WASTE) + ["clean"], list(WASTE.values()) + [1 - sum(WASTE.values())]
    rows, dlg, turn = [], 0, 0
    for i in range(n_pairs):
        kind = rng.choices(kinds, weights)[0]
        bitext = rng.random() < BITEXT_SHARE
        if kind == "dup" and recent:
            ins, resp, intent, cat = rng.choice(recent)
            bitext = True
            if rng.random() < 0.7:  # paraphrase: one word of the request or the answer edited
                if rng.random() < 0.5:
                    ins = edit_words(rng, ins, 1)
                else:
                    resp = edit_words(rng, resp, 1)
        elif kind == "short":
            ins, resp = rng.choice(GOODBYE)
            intent, cat = "none", "general"
        elif kind == "long":
            ins, resp, intent, cat = long_pair(rng)
            bitext = True
        elif kind == "foreign":
            a, b = rng.choice(FOREIGN)
            s = _slots(rng)
            ins, resp, intent, cat = a.format(**s), b.format(**s), "foreign", "general"
        elif kind == "parrot":
            ins, _, intent, cat = (bitext_pair if bitext else multiwoz_pair)(rng)
            resp = ins + " " + rng.choice(["Sure.", "Okay.", "Right."])
        else:
            ins, resp, intent, cat = (bitext_pair if bitext else multiwoz_pair)(rng)
            if bitext:
                recent.append((ins, resp, intent, cat))
        if bitext:
            rows.append(
                (f"bitext:bench.csv:{i}", "bitext", ins, resp, intent, cat, None, "B", "bench.csv", i, None, None)
            )
        else:
            turn = 0 if rng.random() < 0.15 else turn + 2
            dlg += turn == 0
            rows.append(
                (
                    f"multiwoz:bench.json:MUL{dlg:06d}.json#{turn}",
                    "multiwoz",
                    ins,
                    resp,
                    intent,
                    cat,
                    cat,
                    None,
                    "bench.json",
                    None,
                    f"MUL{dlg:06d}.json",
                    turn,
                )
            )
        if len(rows) == CHUNK or i == n_pairs - 1:
            yield pa.Table.from_pylist([dict(zip(PAIR_SCHEMA.names, r)) for r in rows], schema=PAIR_SCHEMA)
            rows = []


def write_corpus(n_pairs: int, out: Path, seed: int = 7) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(out, PAIR_SCHEMA, compression="zstd") as w:
        for table in generate(n_pairs, seed):
            w.write_table(table)
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=95_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    print(write_corpus(a.pairs, a.out, a.seed))

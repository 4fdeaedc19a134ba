"""Generated MultiWOZ-2.2-shaped dialogues for the offline demo (our own text and names).

Each dialogue books one thing in one domain over 4-6 USER->SYSTEM exchanges; USER turns carry
frames for all 8 MultiWOZ services with the active one's intent, as the published files do.
Planted structure (see `core.demo_corpus` for the proportions): some dialogues end on a USER turn,
some hold two USER turns in a row, so `extract_pairs` has turns to drop.
"""

from __future__ import annotations

import random

SERVICES = ["restaurant", "hotel", "attraction", "train", "taxi", "hospital", "bus", "police"]
FOOD = ["italian", "thai", "indian", "mexican", "korean", "lebanese", "spanish", "vegetarian", "seafood", "turkish"]
AREAS = ["north", "south", "east", "west", "centre"]
PRICES = ["cheap", "moderate", "expensive"]
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
STATIONS = ["Ashford", "Bramley", "Castleton", "Dunmore", "Elmstead", "Fairlight", "Glenrock", "Harwick", "Ivybridge"]
NAME_A = [
    "Golden",
    "Copper",
    "Silver",
    "Old",
    "Little",
    "Green",
    "Red",
    "Quiet",
    "Royal",
    "Hidden",
    "Bright",
    "Lazy",
    "Crooked",
    "Velvet",
    "Northern",
    "Rusty",
    "Jolly",
    "Humble",
    "Wandering",
    "Painted",
]
NAME_B = [
    "Lantern",
    "Kettle",
    "Orchard",
    "Harbour",
    "Fox",
    "Anchor",
    "Willow",
    "Meadow",
    "Bridge",
    "Owl",
    "Garden",
    "Compass",
    "Thistle",
    "Pelican",
    "Lighthouse",
    "Acorn",
    "Heron",
    "Barrel",
    "Mill",
    "Quay",
]
KINDS = {
    "attraction": ["museum", "gallery", "park", "theatre", "boat tour", "botanic garden"],
    "hotel": ["guesthouse", "hotel", "inn", "lodge"],
    "restaurant": ["restaurant", "bistro", "kitchen"],
}

# Per domain: opening asks, system follow-ups, user details, offers, bookings, confirmations.
ASK = {
    "restaurant": [
        "I am looking for a {price} {food} place to eat in the {area} of town on {day}.",
        "Can you find me somewhere serving {food} food in the {area}? Nothing too {price2}, it is for {people} people.",
    ],
    "hotel": [
        "I need a {kind} in the {area} with free parking for {people} nights, something {price}.",
        "Please help me find a place to stay in the {area}, ideally a {kind} that is {price}, from {day}.",
    ],
    "attraction": [
        "What is there to see in the {area}? I would love to visit a {kind} this {day}.",
        "Could you suggest a {kind} in the {area} part of town for a visit around {time}?",
    ],
    "train": [
        "I need a train from {src} to {dst} on {day}, leaving after {time}.",
        "Are there trains to {dst} from {src} that arrive by {time} on {day}?",
    ],
    "taxi": [
        "Please book me a taxi from {place} to {place2} leaving at {time}.",
        "I need a cab to {place2}, picking me up at {place} around {time}.",
    ],
}
FOLLOW = [
    "There are a few choices near {place}. How many people will be in your party, and which day works?",
    "Sure, I can look around the {area} for you. Do you have a preferred day and time?",
    "I can help with that; {name} and {place} are both nearby. How many guests should I plan for?",
]
DETAIL = [
    "It will be {people} of us on {day}, around {time} if that works.",
    "There are {people} people in total and we would like {day} at {time}.",
    "Just {people} guests, {day} at about {time}, thank you.",
]
OFFER = [
    "{name} in the {area} fits what you asked for, and it has good reviews. Shall I reserve it for {day}?",
    "I found {name}, a {price} option in the {area}. Would you like me to book it for {people} people?",
    "How about {name}? It is in the {area} and matches your {price} budget.",
]
TRAIN_OFFER = [
    "Train {tid} leaves {src} at {time} and reaches {dst} {mins} minutes later. Should I book {people} seats?",
    "The {time} service, number {tid}, gets you into {dst} after {mins} minutes. Want tickets for {people}?",
]
TAXI_OFFER = [
    "Your {car} is booked from {place} at {time}; the driver will call from {phone}.",
    "Done, a {car} will collect you at {place} at {time}. The contact number is {phone}.",
]
CARS = ["white Toyota", "black Skoda", "grey Volvo", "blue Ford", "red Audi", "silver Tesla", "yellow Honda"]
ACCEPT = [
    "Yes please, book {name} for {people} on {day}.",
    "That sounds great, go ahead and reserve it for {day} at {time}.",
    "Perfect, please make the booking for {people} people.",
]
BOOKED = [
    "Booking was successful for {day} at {time}. Your reference number is {ref}, held for {people} guests.",
    "All set, the reservation at {name} is confirmed under reference {ref}.",
    "You are booked. Keep reference {ref} in case you need to change anything on {day}.",
]
EXTRA = [
    "Could you also give me the phone number and postcode of {name}?",
    "What is the address of {name}, by the way?",
    "Is there anything I should know before visiting {name} on {day}?",
]
EXTRA_REPLY = [
    "The phone number is {phone} and the postcode is {post}.",
    "{name} is at {num} {street} Road, postcode {post}.",
    "You can reach {name} on {phone}; they ask guests to arrive ten minutes before {time}.",
]
THANKS = [
    "Thanks a lot, that is everything I need for {day} at {time}.",
    "Great, thank you for sorting out {name} for {time} so quickly.",
    "Wonderful, that covers my plans with {name} on {day}, thanks.",
]
BYE = [
    "You are welcome. Enjoy your time at {name} and have a lovely {day}!",
    "Glad I could help with {name} on {day}. Goodbye and take care!",
    "My pleasure, have a great {day} with your group of {people} and thank you for calling.",
]
SECOND_ASK = [
    "Sorry, one more thing: can it be {people2} people instead of {people}?",
    "Actually, make that {day2} rather than {day}, if possible.",
]


def _slots(rng: random.Random, domain: str) -> dict[str, str]:
    src, dst = rng.sample(STATIONS, 2)
    place, place2 = (f"the {rng.choice(NAME_A)} {rng.choice(NAME_B)}" for _ in range(2))
    day, day2 = rng.sample(DAYS, 2)
    people = rng.randint(1, 8)
    return {
        "food": rng.choice(FOOD),
        "area": rng.choice(AREAS),
        "price": rng.choice(PRICES),
        "price2": rng.choice(PRICES),
        "day": day,
        "day2": day2,
        "src": src,
        "dst": dst,
        "time": f"{rng.randint(6, 22):02d}:{rng.randrange(0, 60, 5):02d}",
        "place": place,
        "place2": place2,
        "kind": rng.choice(KINDS.get(domain, KINDS["attraction"])),
        "people": str(people),
        "people2": str(people % 8 + 1),
        "name": f"the {rng.choice(NAME_A)} {rng.choice(NAME_B)}",
        "ref": "".join(rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZ23456789", k=8)),
        "phone": f"01{rng.randint(100, 999)} {rng.randint(100000, 999999)}",
        "post": f"cb{rng.randint(1, 9)}{rng.randint(1, 9)}{rng.choice('abdehjlnp')}{rng.choice('qrstuwxyz')}",
        "num": str(rng.randint(1, 220)),
        "street": rng.choice(NAME_B),
        "tid": f"TR{rng.randint(1000, 9999)}",
        "mins": str(rng.randint(17, 140)),
        "car": rng.choice(CARS),
    }


def _frames(domain: str, intent: str, slot_values: dict[str, list[str]]) -> list[dict]:
    return [
        {
            "actions": [],
            "service": s,
            "slots": [],
            "state": {
                "active_intent": intent if s == domain else "NONE",
                "requested_slots": [],
                "slot_values": slot_values if s == domain else {},
            },
        }
        for s in SERVICES
    ]


def _capitalised(text: str) -> str:
    return text[0].upper() + text[1:]


def dialogue(rng: random.Random, dialogue_id: str, kind: str = "normal") -> dict:
    """One dialogue; kind "trailing_user" ends on a USER turn, "double_user" has two USER turns in a row."""
    domain = rng.choice(list(ASK))
    s = _slots(rng, domain)
    find, book = (f"find_{domain}", f"book_{domain}") if domain != "taxi" else ("book_taxi", "book_taxi")
    values = {f"{domain}-area": [s["area"]]} if domain in ("restaurant", "hotel", "attraction") else {}
    exchanges: list[tuple[str, str, str]] = [(rng.choice(ASK[domain]), rng.choice(FOLLOW), find)]
    if domain == "train":
        exchanges.append((rng.choice(DETAIL), rng.choice(TRAIN_OFFER), find))
    elif domain == "taxi":
        exchanges.append((rng.choice(DETAIL), rng.choice(TAXI_OFFER), book))
    else:
        exchanges.append((rng.choice(DETAIL), rng.choice(OFFER), find))
    exchanges.append((rng.choice(ACCEPT), rng.choice(BOOKED), book))
    if rng.random() < 0.6:
        exchanges.append((rng.choice(EXTRA), rng.choice(EXTRA_REPLY), book))
    exchanges.append((rng.choice(THANKS), rng.choice(BYE), book))
    turns: list[dict] = []

    def add(speaker: str, text: str, intent: str | None) -> None:
        frames = _frames(domain, intent, values) if speaker == "USER" else []
        turns.append(
            {
                "frames": frames,
                "speaker": speaker,
                "turn_id": str(len(turns)),
                "utterance": _capitalised(text.format(**s)),
            }
        )

    for n, (user, system, intent) in enumerate(exchanges):
        add("USER", user, intent)
        if kind == "double_user" and n == len(exchanges) // 2:
            add("USER", rng.choice(SECOND_ASK), intent)  # the first USER turn of the two gets no reply
        if kind == "trailing_user" and n == len(exchanges) - 1:
            break  # the closing USER turn is left without a reply
        add("SYSTEM", system, None)
    return {"dialogue_id": dialogue_id, "services": [domain], "turns": turns}

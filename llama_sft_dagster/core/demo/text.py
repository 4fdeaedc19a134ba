"""Text pools for the offline demo corpus, written for this project (no Bitext/MultiWOZ text).

Only the 27 Bitext intent names and 11 category names are reused; every sentence is our own.
Slots in braces are filled per row; `{{...}}` placeholders are left as Bitext leaves them.
"""

from __future__ import annotations

# intent -> (category, request fragments, verb phrase, thing, site section)
INTENTS: dict[str, tuple[str, list[str], str, str, str]] = {
    "create_account": (
        "ACCOUNT",
        ["open a new account for {name}", "sign up for a {tier} account", "register a fresh profile with {email}"],
        "create the account",
        "the registration form",
        "Sign Up",
    ),
    "delete_account": (
        "ACCOUNT",
        [
            "close my account for good",
            "remove the {tier} profile registered to {email}",
            "erase all my data and the account",
        ],
        "delete the account",
        "your profile",
        "Privacy Settings",
    ),
    "edit_account": (
        "ACCOUNT",
        [
            "update the phone number on my profile",
            "change the name on account {acct}",
            "edit the details saved for {email}",
        ],
        "save the new details",
        "your personal details",
        "My Profile",
    ),
    "recover_password": (
        "ACCOUNT",
        [
            "reset the password for {email}",
            "get back into account {acct} after forgetting my password",
            "recover my login because the code never came",
        ],
        "reset the password",
        "the login page",
        "Forgot Password",
    ),
    "registration_problems": (
        "ACCOUNT",
        [
            "finish signing up since the form keeps failing",
            "fix the error I get while registering {email}",
            "complete registration when the verification link expired",
        ],
        "finish the registration",
        "the verification email",
        "Sign Up",
    ),
    "switch_account": (
        "ACCOUNT",
        [
            "move from the {tier} plan to another account type",
            "swap my personal account for a business one",
            "switch between the two profiles I own",
        ],
        "switch the account",
        "your account type",
        "Account Settings",
    ),
    "check_cancellation_fee": (
        "CANCEL",
        [
            "know the fee for ending my {tier} plan early",
            "check what cancelling order {ord} would cost",
            "find out if there is a penalty for leaving this month",
        ],
        "review the fee",
        "the cancellation terms",
        "Billing",
    ),
    "contact_customer_service": (
        "CONTACT",
        [
            "reach customer service about the {prod}",
            "find the support team opening hours",
            "send a message to support about order {ord}",
        ],
        "contact the team",
        "the help centre",
        "Contact Us",
    ),
    "contact_human_agent": (
        "CONTACT",
        [
            "speak with a real person about my {prod}",
            "talk to a live agent instead of the bot",
            "get a human to look at account {acct}",
        ],
        "reach an agent",
        "the live chat",
        "Help",
    ),
    "delivery_options": (
        "DELIVERY",
        [
            "see which delivery methods you offer to {city}",
            "choose express shipping for the {prod}",
            "learn if weekend delivery is available",
        ],
        "pick a delivery option",
        "the delivery choices",
        "Checkout",
    ),
    "delivery_period": (
        "DELIVERY",
        [
            "know when order {ord} will arrive",
            "find out how long shipping to {city} takes",
            "check the expected arrival of the {prod}",
        ],
        "see the delivery estimate",
        "the shipping estimate",
        "Order History",
    ),
    "complaint": (
        "FEEDBACK",
        [
            "file a complaint about the damaged {prod}",
            "report the rude courier who brought order {ord}",
            "complain about waiting {days} days for a reply",
        ],
        "submit the complaint",
        "the complaint form",
        "Feedback",
    ),
    "review": (
        "FEEDBACK",
        [
            "leave a review for the {prod}",
            "share my opinion about your service in {city}",
            "rate the support I got last week",
        ],
        "post the review",
        "the review page",
        "My Orders",
    ),
    "check_invoice": (
        "INVOICE",
        ["look at invoice {inv} again", "check the amount billed for order {ord}", "see the invoice for the {prod}"],
        "view the invoice",
        "the invoice list",
        "Billing",
    ),
    "get_invoice": (
        "INVOICE",
        [
            "download a copy of invoice {inv}",
            "receive the invoice for order {ord} by email",
            "get a bill with my company name on it",
        ],
        "download the invoice",
        "the invoice archive",
        "Billing",
    ),
    "cancel_order": (
        "ORDER",
        ["cancel order {ord}", "call off the {prod} I ordered on {date}", "stop purchase {ord} before it ships"],
        "cancel the order",
        "the order",
        "Order History",
    ),
    "change_order": (
        "ORDER",
        [
            "swap the {prod} in order {ord} for another size",
            "add one more item to order {ord}",
            "modify the quantity in my latest order",
        ],
        "edit the order",
        "the order",
        "Order History",
    ),
    "place_order": (
        "ORDER",
        ["buy the {prod} online", "place an order for two of the {prod}", "purchase a gift card worth {amount}"],
        "place the order",
        "the shopping cart",
        "Cart",
    ),
    "track_order": (
        "ORDER",
        ["track order {ord}", "see where the {prod} is right now", "follow the parcel I was promised by {date}"],
        "track the parcel",
        "the tracking page",
        "Order History",
    ),
    "check_payment_methods": (
        "PAYMENT",
        [
            "know which cards you accept",
            "check if I can pay for the {prod} with a bank transfer",
            "see the payment options for customers in {city}",
        ],
        "review the payment options",
        "the payment options",
        "Payment Methods",
    ),
    "payment_issue": (
        "PAYMENT",
        [
            "fix a card payment that failed for order {ord}",
            "sort out being charged twice for the {prod}",
            "understand why my payment of {amount} was declined",
        ],
        "retry the payment",
        "the payment record",
        "Payment Methods",
    ),
    "check_refund_policy": (
        "REFUND",
        [
            "read the refund rules for the {prod}",
            "know if opened items can be refunded",
            "check how many days I have to ask for my money back",
        ],
        "read the policy",
        "the refund policy",
        "Returns",
    ),
    "get_refund": (
        "REFUND",
        ["get my money back for order {ord}", "request a refund of {amount}", "be reimbursed for the broken {prod}"],
        "request the refund",
        "the refund request",
        "Returns",
    ),
    "track_refund": (
        "REFUND",
        [
            "see the status of my refund for order {ord}",
            "find out when the {amount} refund will reach my card",
            "follow up on the refund I asked for on {date}",
        ],
        "follow the refund",
        "the refund status",
        "Returns",
    ),
    "change_shipping_address": (
        "SHIPPING",
        [
            "send order {ord} to a different address",
            "correct the street name on my delivery address",
            "update the shipping address to one in {city}",
        ],
        "change the address",
        "the shipping address",
        "Addresses",
    ),
    "set_up_shipping_address": (
        "SHIPPING",
        [
            "add a new shipping address in {city}",
            "save a second delivery address for my office",
            "set up the address for my first order",
        ],
        "save the address",
        "the address book",
        "Addresses",
    ),
    "newsletter_subscription": (
        "SUBSCRIPTION",
        [
            "subscribe to the newsletter with {email}",
            "stop receiving the weekly newsletter",
            "change how often the newsletter reaches me",
        ],
        "update the subscription",
        "the newsletter settings",
        "Email Preferences",
    ),
}

GREETINGS = [
    "",
    "Hi, ",
    "Hello, ",
    "Good morning, ",
    "Hey there, ",
    "Good evening, ",
    "Excuse me, ",
    "Quick question, ",
]
FRAMES = [
    "can you help me {ask}?",
    "I would like to {ask}.",
    "how do I {ask}?",
    "what is the way to {ask}?",
    "I need to {ask} as soon as possible.",
    "is it possible to {ask} today?",
    "please tell me how to {ask}.",
    "I am trying to {ask} but I am stuck.",
    "could someone explain how I can {ask}?",
    "I want to {ask}, what should I do?",
]
TAILS = [
    "",
    "",
    " I bought the {prod} on {date}.",
    " My account number is {acct}.",
    " I live in {city}.",
    " This is the second time I ask.",
    " My name is {name}.",
    " Thanks in advance.",
]
OPENERS = [
    "Thank you for getting in touch, {name}.",
    "I understand that you want to {verb}, and I am glad to help with it.",
    "Thanks for your patience while I look into {thing} for you.",
    "I can certainly guide you through this, {name}.",
    "Sorry for any trouble this has caused with the {prod}.",
    "Happy to help you {verb} right away.",
    "I see that this concerns {thing}, so let us sort it out together.",
    "Good question, and the steps are short.",
]
STEPS = [
    "Sign in to your account on {{{{Website URL}}}} with the email {email}.",
    "Open the {{{{{section}}}}} section from the main menu.",
    "Find {thing} that mentions {ref} and select it.",
    "Choose the option to {verb} and confirm when asked.",
    "Check the confirmation email that should arrive within {mins} minutes.",
    "If the button is greyed out, refresh the page or try again from our mobile app.",
    "Keep the reference {ref} handy in case you need to write to us again.",
    "Review the summary screen carefully before you press the final button.",
    "Make sure the details for the {prod} match what you expect.",
]
DETAILS = [
    "Most requests like this are completed within {days} business days.",
    "Our records show order {ord} was placed on {date}.",
    "The amount involved is {amount}, and it appears on your statement as {{{{Company Name}}}}.",
    "Customers in {city} usually see the update by {date}.",
    "A note has been added to account {acct} so any colleague can follow up.",
    "This works the same way on the website and in the app.",
]
CLOSINGS = [
    "If anything is unclear, call us at {{{{Customer Support Phone Number}}}} during {{{{Customer Support Hours}}}}.",
    "You can also reach us through {{{{Live Chat Support}}}} whenever it suits you.",
    "Let me know if there is anything else I can do for you today, {name}.",
    "We appreciate your business and hope the {prod} serves you well.",
    "Feel free to reply to this message if you hit any other snag.",
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
    "Nadia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sami",
    "Tara",
    "Uma",
    "Victor",
    "Wen",
    "Yusuf",
    "Zoe",
]
ADJECTIVES = [
    "blue",
    "compact",
    "wireless",
    "ceramic",
    "steel",
    "foldable",
    "organic",
    "vintage",
    "smart",
    "large",
    "waterproof",
    "bamboo",
    "leather",
    "portable",
    "quiet",
    "bright",
]
PRODUCTS = [
    "kettle",
    "desk lamp",
    "backpack",
    "blender",
    "speaker",
    "office chair",
    "rain jacket",
    "coffee grinder",
    "phone case",
    "yoga mat",
    "toaster",
    "monitor stand",
    "water bottle",
    "headset",
    "air fryer",
    "bookshelf",
]
CITIES = ["Lisbon", "Leeds", "Austin", "Nairobi", "Osaka", "Lyon", "Perth", "Denver", "Porto", "Quito", "Cork", "Malmo"]
TIERS = ["basic", "premium", "family", "student", "business", "gold"]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]

# Planted non-English rows (our own sentences), spaced so whitespace word counts pass the
# word-count filter and the rows reach the language filter.
FRENCH_ASKS = [
    "Bonjour, je voudrais annuler la commande {ord} s'il vous plaît.",
    "Pouvez-vous m'aider à changer l'adresse de livraison pour {city} ?",
    "Je n'ai toujours pas reçu mon remboursement, que dois-je faire ?",
    "Comment puis-je télécharger la facture de ma dernière commande ?",
]
FRENCH_REPLIES = [
    "Bien sûr, je peux vous aider avec cela. Connectez-vous à votre compte, ouvrez la section des commandes "
    "et suivez les étapes indiquées. Notre équipe reste disponible si vous avez besoin d'aide.",
    "Merci pour votre message. Votre demande a bien été enregistrée et vous recevrez une confirmation par "
    "courriel dans les prochains jours.",
]
CHINESE_ASKS = [
    "你好 我想 取消 订单 {ord} 请问 怎么 操作",
    "请问 我的 包裹 什么 时候 能 送到 {city}",
    "我 想 修改 收货 地址 可以 帮我 吗 谢谢",
    "我的 退款 还 没有 到账 请 帮我 查 一下",
]
CHINESE_REPLIES = [
    "您好 感谢 您的 耐心 请 登录 您的 账户 打开 订单 页面 然后 按照 提示 完成 操作 如果 还有 问题 请 随时 联系 我们",
    "非常 抱歉 给您 带来 不便 我们 已经 记录 您的 请求 客服 团队 会在 两个 工作日 内 回复 您",
]
SHORT_ASKS = ["cancel my order", "refund please", "where is package", "need an invoice"]
SHORT_REPLIES = ["Sure, done.", "Please check your email.", "It ships tomorrow.", "Contact support."]

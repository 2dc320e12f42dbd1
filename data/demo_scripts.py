"""Hand-written text of the Parcelo demo dialogs: fictional fill-ins, customer phrasings, agent macros.

Every string here was written for this project (Parcelo is a fictional shop; names, products, carriers
and order numbers are invented; e-mail addresses use example.com). ``build_demo_dialogs.py`` composes
dialogs from these tables; this module holds text only, no logic. Agent macros state the same policies
as ``assistant/demo_data/faq/faq.jsonl`` (30-day returns, refunds issued within 3 business days,
2-year warranty, ...); change both together. Templates use ``{order}``, ``{product}``, ``{short}``, ... filled by ``Ctx.fill``.
"""

# fmt: off
# (tables are laid out by hand for reading; the formatter would put one string per line)

# ---------------------------------------------------------------- fictional fill-ins
FIRST_NAMES = ["Maya", "Jordan", "Priya", "Lucas", "Amara", "Ben", "Sofia", "Kenji", "Hannah", "Omar",
               "Chloe", "Diego", "Grace", "Ivan", "Leila", "Noah", "Ruth", "Tariq", "Zoe", "Mateo",
               "Elena", "Sam", "Aisha", "Felix", "Nina", "Victor", "Yara", "Caleb", "Ines", "Theo"]
LAST_NAMES = ["Okafor", "Lindqvist", "Marsh", "Tanaka", "Reyes", "Hale", "Novak", "Brennan", "Dubois",
              "Castillo", "Iyer", "Walsh", "Moreau", "Fischer", "Quinn", "Sato", "Abbott", "Ferreira"]
# (full name the agent uses, short name the customer uses, price in USD)
PRODUCTS = [
    ("Lumio 55-inch 4K TV", "TV", 549), ("Vexa Pro 14 laptop", "laptop", 1199),
    ("Orbit S3 smartphone", "phone", 699), ("Pulse ANC headphones", "headphones", 249),
    ("Tempo 2 smartwatch", "smartwatch", 199), ("Nimbus 10 tablet", "tablet", 379),
    ("Echoline soundbar", "soundbar", 299), ("Kestrel M5 camera", "camera", 899),
    ("Glide wireless mouse", "mouse", 39), ("Halo smart speaker", "speaker", 89),
    ("Forge gaming console", "console", 499), ("Strata 27-inch monitor", "monitor", 329),
    ("Volt 20K power bank", "power bank", 49), ("Aria wireless earbuds", "earbuds", 129),
    ("Beacon mesh Wi-Fi kit", "wifi kit", 219), ("Spark e-reader", "e-reader", 139),
]
PLURAL = {"headphones", "earbuds"}  # short names that take "are"
CARRIERS = ["Swiftline", "BlueRoute", "PostNova"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
STREETS = ["Maple Street", "Harbor Road", "Elm Avenue", "Cedar Lane", "Mill Road", "Park Terrace",
           "Orchard Way", "King Street"]
CITIES = ["Springfield", "Riverton", "Lakewood", "Fairview", "Greenville", "Oakdale"]
PRICE_DROPS = [10, 15, 20, 25, 30, 40, 50, 60]

# ---------------------------------------------------------------- shared macros
GREETINGS = ["hi", "hello", "hey there", "hi, I need some help", "good morning", "hello, anyone there?",
             "hi parcelo", "hey"]
AGENT_GREETING = "Hi, thanks for contacting Parcelo! How can I help you today?"
THANKS = ["thanks!", "thank you so much", "great, thanks", "perfect, thank you", "ok thx",
          "cool, thanks for the help", "that's great, thanks a lot", "awesome, thank you", "ok, thanks",
          "brilliant, cheers"]
AGENT_ANYTHING_ELSE = "You're welcome! Is there anything else I can help you with?"
NOTHING_ELSE = ["no, that's all", "nope, that's it", "no thanks", "that's everything, thanks", "all good",
                "no that's all for now"]
AGENT_GOODBYE = "Thanks for contacting Parcelo. Have a great day!"
THANKS_BYE = ["thanks, bye", "thank you, bye!", "great, that's all I needed. bye", "cheers, bye"]
AGENT_THANKS_BYE = "You're welcome. Thanks for contacting Parcelo, and have a great day!"

ASK_ORDER = ("I can help with that. What's your order number? It starts with PC- and is in your "
             "confirmation email.")
ASK_ORDER_SORRY = "I'm sorry about that. Could you give me your order number, please?"
GIVE_ORDER = ["{order}", "it's {order}", "sure, {order}", "order number is {order}", "{order} i think",
              "yes it's {order}", "here you go: {order}", "Order {order}"]
GIVE_EMAIL = ["{email}", "it's {email}", "{email} I think"]

HUMAN_REQUESTS = ["can I talk to a real person?", "I want to speak to a human", "agent please",
                  "this isn't helping, get me a human", "can you put me through to someone",
                  "I'd rather talk to a person", "human please", "let me speak to customer service"]
AGENT_HANDOFF = ("Of course. I'm connecting you with a member of our support team now; it usually takes "
                 "less than 5 minutes. Could you tell me briefly what it's about so they can pick it up "
                 "straight away?")
HANDOFF_REASONS = ["it's about order {order}", "a problem with my refund", "my {short} {is_} faulty",
                   "billing issue", "I have a complaint about a delivery",
                   "it's complicated, about my account", "my order {order} is a mess"]
AGENT_HANDOFF_DONE = "Thanks, I've passed that on. A member of our team will join this chat shortly."

# kept different from the out-of-scope queries in assistant/demo_data/faq/queries-dev.jsonl, which
# measure handoff
OUT_OF_SCOPE = ["will it rain tomorrow?", "tell me something funny", "do you sell dishwashers?",
                "can you book me a taxi", "who won the match yesterday", "do you sell sofas?",
                "any good pizza places around here?", "can you do my essay for me"]
AGENT_OUT_OF_SCOPE = ("Sorry, I can only help with Parcelo orders, deliveries, returns, payments, warranty "
                      "and your account. Is there anything like that I can help you with?")

FAQ_PREFIXES = ["quick question: ", "hi, ", "hey, ", "question - "]

# ---------------------------------------------------------------- per scenario
# customer lists are phrasings drawn at random; "agent_*" strings are the team's macros.
SCRIPTS: dict[str, dict] = {
    "track_order": {
        "open": ["where is my order?", "hi, my package hasn't arrived yet", "can you check on my order",
                 "I ordered {a} {short} on {day1}, when will it come?", "wheres my {short}??",
                 "when is my delivery coming", "can you tell me where my parcel is",
                 "I'd like an update on my order", "my order still hasnt arrived",
                 "has my {short} shipped yet?"],
        "agent_shipped": ("Thanks! Order {order} ({product}) shipped on {day1} with {carrier} and is due "
                          "to arrive on {day2}. You can follow it under Account > Orders > Track."),
        "agent_packed": ("Thanks! Order {order} ({product}) is packed at our warehouse and leaves today. "
                         "We'll email you the tracking link as soon as it ships."),
        "agent_late": ("Thanks. Order {order} was due on {day2} and I'm sorry it's late. {carrier}'s last "
                       "scan was on {day1}; if it hasn't arrived 7 business days after the expected "
                       "date, we'll send a free replacement or refund you in full."),
        "angry": ["this is ridiculous, I want to talk to someone",
                  "not good enough, put me through to a person", "I need a human for this"],
        "worried": ["can't you just send a new one now?", "so I just have to wait?",
                    "that's annoying. what do I do now", "ugh ok, what if it never shows up"],
    },
    "cancel_order": {
        "open": ["I want to cancel my order", "please cancel my order",
                 "can I cancel the {short} I just ordered", "i ordered by mistake, cancel it pls",
                 "how do I cancel an order?", "need to cancel order asap",
                 "changed my mind about the {short}, can you cancel the order", "cancel order"],
        "agent_done": ("Order {order} was placed {minutes} minutes ago, so it can still be cancelled. "
                       "Done: it's cancelled and the ${price} payment goes back to your original payment "
                       "method within 3 business days."),
        "agent_too_late": ("I'm sorry, order {order} was placed more than 60 minutes ago and is already "
                           "packed, so it can't be cancelled. You can refuse the delivery or return it "
                           "within 30 days for a full refund."),
        "how_return": ["ok how do I return it then?", "fine. how does the return work",
                       "so how do i send it back", "how do I do the return"],
    },
    "change_address": {
        "open": ["I need to change the delivery address on my order",
                 "I put the wrong address, can you fix it?",
                 "can you send my {short} to a different address",
                 "we're moving, can my order go to the new place", "wrong address on my order!",
                 "can i change where my package is delivered"],
        "agent_ask_address": ("Order {order} hasn't been packed yet, so I can still change it. What's the "
                              "new delivery address?"),
        "give_address": ["{address}", "it's {address}", "please send it to {address}",
                         "new address: {address}"],
        "agent_changed": ("Thanks, I've changed the delivery address for order {order} to {address}. "
                          "You'll get a confirmation email in a few minutes."),
        "agent_locked": ("Order {order} has already shipped with {carrier}, so the address is locked. You "
                         "can ask {carrier} to redirect the parcel from the tracking page under Account "
                         "> Orders > Track."),
    },
    "return_item": {
        "open": ["I want to return my {short}", "how do I send back the {short}?",
                 "i'd like to return an item", "the {short} {isnt} what I expected, can I return {it}",
                 "how do returns work?", "need to return something", "can I send {this} {short} back",
                 "return please, don't like the {short}"],
        "refund_when": ["how long does the refund take?", "and when do I get my money back?",
                        "how long till I see the refund", "when will i be refunded"],
        "label_cost": ["do I have to pay for the shipping?", "is the return label free?",
                       "does it cost anything to send back", "who pays postage"],
    },
    "refund_status": {
        "open": ["I returned my {short} but haven't got my refund", "where is my refund?",
                 "still waiting for my refund", "I sent back the {short} last week, no money yet",
                 "when will my refund come through", "refund hasn't arrived"],
        "agent_ask": "Sorry for the wait. What's your order number, please?",
        "agent_refunded": ("Thanks. We received your return on {day1} and refunded ${price} to your "
                           "original payment method on {day2}. Banks usually take 5-10 business days to "
                           "show it on your statement."),
        "agent_in_transit": ("Thanks. Your return for order {order} is still on its way to our warehouse; "
                             "{carrier} expects to deliver it on {day2}. We issue the refund within 3 "
                             "business days of it arriving and email you when we do."),
    },
    "damaged_item": {
        "open": ["my {short} arrived broken", "the {short} I got {is_} damaged",
                 "my new {short} won't turn on", "the box was crushed and the {short} {is_} cracked",
                 "just got my {short} and {its} faulty", "the {short} {is_} dead on arrival",
                 "hi, my {short} came with a cracked screen"],
        "agent_ask": ("I'm so sorry about that! Could you give me the order number and a photo of the "
                      "damage?"),
        "give": ["{order}, photo attached", "sure, it's {order}. sending the photo now",
                 "{order} - photo attached", "order {order}, here's a pic"],
        "agent_replace": ("Thank you. I've arranged a free replacement for your {product} from order "
                          "{order}; it ships today with Express delivery. We've also emailed you a "
                          "prepaid label to send the damaged one back within 14 days."),
        "want_refund": ["can I just get a refund instead?", "actually I'd prefer my money back",
                        "I don't want a replacement, refund please"],
        "agent_refund": ("Of course. I've cancelled the replacement, and we'll refund ${price} within 3 "
                         "business days of the damaged item arriving back with us."),
    },
    "wrong_item": {
        "open": ["you sent me the wrong item", "I ordered {a} {short} but got something else",
                 "wrong product in my parcel", "this isn't what I ordered", "got the wrong colour {short}"],
        "agent_fix": ("Apologies for the mix-up. I've arranged for the correct {product} to ship today at "
                      "no cost, and emailed you a free label to send the wrong item back within 14 days."),
    },
    "password_reset": {
        "open": ["I forgot my password", "can't log in, forgot my password", "how do I reset my password?",
                 "forgot pasword help", "I need to reset my password",
                 "locked out, don't remember my password"],
        "no_email": ["I did that but no email came", "the reset email never arrived", "didn't get the link",
                     "i tried, nothing in my inbox"],
        "agent_ask_email": "Let me check. What's the email address on your account?",
        "agent_resent": ("Thanks. I've sent a new reset link to {email}; it's valid for 30 minutes. If it "
                         "isn't in your inbox within a few minutes, please check your spam folder."),
    },
    "invoice_request": {
        "open_general": ["I need an invoice for my order", "how do I get a receipt?",
                         "where can I download my invoice", "need a bill for my purchase"],
        "open_order": ["can you send me the invoice for {order}?", "I need the invoice for order {order}",
                       "could I get a receipt for {order} please", "invoice for {order} please"],
        "agent_sent": ("Of course. I've emailed the invoice for order {order} as a PDF to the address on "
                       "your account. You can also download it any time under Account > Orders > "
                       "Download invoice."),
        "company": ["can it have my company name on it?", "I need our VAT number on it",
                    "can you add my business details", "it needs to be in my company's name"],
        "agent_company": ("Yes: open the order under Account > Orders, tap Edit invoice details, add the "
                          "company name and VAT number, and download it again. You can do this within 30 "
                          "days of purchase."),
    },
    "warranty_claim": {
        "open": ["my {short} stopped working after {months} months",
                 "the {short} I bought from you {is_} faulty",
                 "my {short} {keeps} turning off, {its} only {months} months old",
                 "{is_cap} my {short} still under warranty?", "my {short} broke, can you repair {it}",
                 "the {short} died after {months} months of use"],
        "agent_covered": ("I'm sorry to hear that. Your {short} {is_} covered by our 2-year warranty. "
                          "What's the order number?"),
        "agent_opened": ("Thanks. I've opened warranty claim WC-{ref} for order {order} and emailed you a "
                         "free shipping label. Most repairs are completed within 10-15 business days, "
                         "and you can follow it under Account > Repairs."),
        "unfixable": ["what if it can't be fixed?", "and if they can't repair it?",
                      "what happens if it's beyond repair"],
        "agent_unfixable": ("If it can't be repaired, we replace it with the same model or refund you in "
                            "full."),
    },
    "accidental_damage": {
        "open": ["I dropped my {short} and the screen cracked, is that covered?",
                 "spilled water on my {short}, can you fix {it}", "my {short} fell and broke, warranty?",
                 "I broke my {short}, do you do repairs"],
        "agent_quote": ("I'm sorry to hear that. Accidental damage isn't covered by the standard "
                        "warranty, but we can still repair it. Start a repair under Account > Repairs > "
                        "New repair; we send you a quote after diagnosis and only charge if you accept "
                        "it. If you decline, we return the item for a $25 diagnosis fee."),
        "cover": ["do you have insurance for next time?", "is there any cover for accidents?",
                  "can I get protection against this in future"],
    },
    "charged_twice": {
        "open": ["I've been charged twice", "there are two charges on my card for one order",
                 "why did you take the money twice?", "double charged for my {short}!"],
        "agent_hold": ("Thanks. I can see one payment of ${price} for order {order}; the second charge is "
                       "a temporary authorisation hold from an earlier declined attempt. It disappears "
                       "by itself within 5 business days; if it's still there after that, send us a "
                       "screenshot of your statement and we'll refund it."),
    },
    "payment_declined": {
        "open": ["my card keeps getting declined", "payment failed at checkout",
                 "why won't my card go through?", "it says payment declined"],
        "other_way": ["can I use paypal instead?", "can I pay another way?", "ok, what else can I pay with"],
    },
    "not_received": {
        "open": ["it says delivered but I didn't get it", "tracking shows delivered, no parcel here",
                 "my {short} {was} marked delivered but {its} not here",
                 "package says delivered but missing"],
        "agent_wait": ("Thanks. {carrier} marked order {order} as delivered on {day2}. Please check with "
                       "neighbours, your mailroom and any safe place, as carriers sometimes mark parcels "
                       "delivered up to 24 hours early. If it still hasn't turned up after 48 hours, let "
                       "us know and we'll open a carrier investigation."),
        "agent_investigate": ("Thanks. {carrier} marked order {order} as delivered on {day1}, more than "
                              "48 hours ago, so I've opened an investigation with them (reference "
                              "INV-{ref}). It takes up to 5 business days, and then we'll send a "
                              "replacement or a full refund."),
    },
    "price_protection": {
        "open": ["the {short} I bought is cheaper now, can I get the difference?",
                 "price dropped on my {short} right after I ordered", "you lowered the price of my {short}!",
                 "I saw the {short} on sale for less, do I get a refund of the difference",
                 "do you refund price drops? my {short} {is_} ${diff} cheaper now"],
        "agent_refunded": ("Thanks. Order {order} was delivered {recent_days} days ago, so it's covered "
                           "by Price Protection. I've refunded the ${diff} difference to your original "
                           "payment method; banks usually take 5-10 business days to show it."),
        "agent_too_late": ("Thanks. Order {order} was delivered {old_days} days ago, and Price Protection "
                           "covers price drops within 14 days of delivery, so I'm afraid this one isn't "
                           "eligible."),
    },
    "gift_card_resend": {
        "open": ["the gift card I bought never arrived", "my gift card code didn't come through",
                 "I bought an e-gift card for my mom and she didn't get it",
                 "lost my gift card code, can you help", "gift card email not received"],
        "agent_ask": ("Sorry about that. Digital gift cards arrive within 10 minutes, so please check the "
                      "spam folder first. If it's not there, could you give me the order number?"),
        "agent_resent": ("Thanks. I've resent the gift card from order {order} to the recipient's email "
                         "address; it should arrive within 10 minutes. It's valid for 5 years from "
                         "purchase."),
    },
    "missing_item": {
        "open": ["one item is missing from my order", "I only got part of my order",
                 "my {short} wasn't in the box", "the package came but the {short} {isnt} in it",
                 "got my parcel but something's missing"],
        "agent_second_parcel": ("Thanks. Order {order} was sent in two parcels from different warehouses; "
                                "your {product} is in the second one, due on {day2} with {carrier}. Each "
                                "parcel has its own tracking link under Account > Orders."),
        "agent_resend": ("Thanks. Every parcel of order {order} shows as delivered, so I've arranged for "
                         "the missing {product} to ship today at no cost. You'll get the tracking link "
                         "by email."),
    },
    "account_locked": {
        "open": ["my account is locked", "it says my account is blocked",
                 "can't sign in, it says too many attempts", "help, I'm locked out of my account"],
        "now": ["I need to get in now though", "I can't wait 30 minutes", "is there a faster way?"],
        "agent_now": ("Then reset your password with Forgot password? on the sign-in page: that unlocks "
                      "the account straight away."),
    },
    "order_confirmation": {
        "open": ["I didn't get a confirmation email for my order", "did my order go through?",
                 "no order confirmation in my inbox", "I paid but got no confirmation"],
        "agent_ask_email": "Let me check. What's the email address you used at checkout?",
        "give_email": ["{email}", "it's {email}", "I used {email}"],
        "agent_found": ("Thanks. I can see order {order} placed with {email}, so it went through. I've "
                        "resent the confirmation email; please check your spam folder if it isn't in "
                        "your inbox within a few minutes."),
    },
}

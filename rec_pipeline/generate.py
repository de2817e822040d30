"""Seeded generator of realistic e-commerce logs: the project's embedded default data.

The output looks like what a small shop's tracking pipeline would export, so every later stage (validation,
features, search and recommendation models) has something with real structure to learn from:

- a catalogue of items in about twelve categories, with titles and descriptions composed from each category's
  product nouns, materials, colours (or scents, or gemstones) and use cases, and prices drawn per category;
  most items predate the log window and the rest are listed day by day, so the last days hold cold-start items;
- users with concentrated category tastes, a preferred price level and heavy-tailed activity, some of whom
  only sign up during the window;
- sessions that follow a daily rhythm, often open with a search built from the attributes of what the user
  wants, then view items drawn by taste, popularity, novelty and price, and thin out along the funnel
  view -> click -> add_to_cart -> purchase;
- a small, known number of glitches (client retries that re-send an event, and events on delisted items) for
  the validation stage to quarantine.

The same `GeneratorConfig` always gives byte-identical files.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import NamedTuple

import numpy as np

from rec_pipeline.schema import CATALOG_COLUMNS, EVENT_COLUMNS, EVENT_TYPES

SECONDS_PER_DAY = 86_400
DELISTED_ID_BASE = 900_000  # delisted items get ids "i9xxxxx", outside the catalogue's range


@dataclass(frozen=True)
class GeneratorConfig:
    seed: int = 0
    n_items: int = 3000
    n_users: int = 2000
    n_events: int = 150_000  # target; the actual count of lines lands within a few percent of it
    days: int = 60
    start: str = "2025-09-01"  # UTC date of day 0
    dirty_fraction: float = 0.004  # share of event lines that are glitches (retried duplicates, delisted items)

    def __post_init__(self) -> None:
        date.fromisoformat(self.start)
        if min(self.n_items, self.n_users, self.n_events, self.days) < 1:
            raise ValueError("n_items, n_users, n_events and days must all be at least 1")
        if self.n_items >= DELISTED_ID_BASE:
            raise ValueError(f"n_items must stay below {DELISTED_ID_BASE}, where delisted item ids start")
        if not 0.0 <= self.dirty_fraction <= 0.5:
            raise ValueError("dirty_fraction must be between 0 and 0.5")

    @classmethod
    def small(cls, seed: int = 0, **overrides) -> GeneratorConfig:
        """A size that generates in well under a second, for tests."""
        return cls(**{"seed": seed, "n_items": 300, "n_users": 200, "n_events": 8000, "days": 20, **overrides})


class Noun(NamedTuple):
    name: str  # written as in running text; titles capitalise the first letter of each word
    price_factor: float
    materials: tuple[str, ...]  # only materials this kind of product is really made of
    feature: str  # a sentence for the description


class Category(NamedTuple):
    name: str
    share: float  # share of the catalogue, and the prior for users' tastes
    median_price: float
    price_sigma: float
    brands: tuple[str, ...]
    variants: tuple[str, ...]  # colours, or what plays their part (scents, gemstones)
    variant_phrase: str  # how a description mentions the variant
    adjectives: tuple[str, ...]
    use_cases: tuple[str, ...]
    nouns: tuple[Noun, ...]


_METALS = ("sterling silver", "gold-plated brass", "9ct gold")

CATEGORIES: tuple[Category, ...] = (
    Category(
        "home & kitchen", 0.12, 24.0, 0.55,
        ("Hearthwell", "Oak & Ember", "Larder Lane", "Mellow Table", "Kitchin Co.", "Copperfield"),
        ("white", "charcoal", "sage green", "cream", "slate blue", "mustard yellow", "natural", "terracotta"),
        "in {}",
        ("minimalist", "rustic", "hand-finished", "classic", "everyday", "modern"),
        ("everyday cooking", "weekend brunches", "small kitchens", "serving guests", "open shelving"),
        (
            Noun("mixing bowl", 1.0, ("ceramic", "stainless steel", "bamboo"),
                 "Generous capacity with a non-slip base."),
            Noun("chopping board", 0.9, ("acacia wood", "bamboo", "olive wood"),
                 "Reversible, with a juice groove on one side."),
            Noun("mug", 0.55, ("stoneware", "ceramic", "enamel"), "Holds 350 ml and is dishwasher safe."),
            Noun("serving platter", 1.3, ("stoneware", "acacia wood", "marble"),
                 "Large enough for a full cheese board."),
            Noun("utensil holder", 0.8, ("ceramic", "stainless steel", "bamboo"),
                 "Keeps spatulas and spoons within reach."),
            Noun("tea towel set", 0.6, ("linen", "organic cotton"), "Three towels that absorb well and dry quickly."),
            Noun("storage jar", 0.7, ("glass", "ceramic"), "An airtight seal keeps coffee, pasta and grains fresh."),
            Noun("frying pan", 2.0, ("cast iron", "stainless steel", "carbon steel"),
                 "Works on every hob, induction included."),
        ),
    ),
    Category(
        "candles & home fragrance", 0.08, 18.0, 0.45,
        ("Larkspur", "Wick & Willow", "Emberly", "Stillroom", "Hollow Oak", "Glimmerwood"),
        ("sage green", "ivory", "blush pink", "amber", "charcoal", "white", "dusty blue", "ochre"),
        "in {}",
        ("minimalist", "rustic", "elegant", "cosy", "artisan", "Scandi-style"),
        ("dinner tables and mantelpieces", "relaxing evenings", "bathrooms and bedrooms", "gifting", "winter nights"),
        (
            Noun("candle holder", 1.0, ("ceramic", "glass", "brass"), "Holds standard tea lights."),
            Noun("scented candle", 1.1, ("soy wax", "beeswax", "coconut wax"), "Burns cleanly for around 40 hours."),
            Noun("reed diffuser", 1.3, ("glass", "ceramic"),
                 "Comes with eight rattan reeds and lasts up to three months."),
            Noun("tealight set", 0.5, ("soy wax", "beeswax"), "A pack of 24 tea lights."),
            Noun("wax melts", 0.45, ("soy wax", "coconut wax"), "Six cubes that fit any standard wax burner."),
            Noun("incense holder", 0.7, ("ceramic", "brass", "wood"), "Catches the ash from sticks and cones."),
            Noun("candle snuffer", 0.8, ("brass", "stainless steel"), "Puts out flames without smoke or spilled wax."),
            Noun("pillar candle", 0.9, ("beeswax", "soy wax"), "Dripless and free-standing."),
        ),
    ),
    Category(
        "electronics accessories", 0.10, 22.0, 0.6,
        ("Voltaro", "Nimbus Labs", "Cableknit", "Pivotech", "Arclight", "Junction"),
        ("black", "white", "graphite", "silver", "midnight blue", "sand", "sage green", "coral"),
        "in {}",
        ("slim", "compact", "rugged", "minimalist", "premium", "travel-ready"),
        ("commuting", "home offices", "travel", "gaming setups", "everyday carry"),
        (
            Noun("phone case", 0.8, ("silicone", "leather", "recycled plastic"),
                 "Raised edges protect the screen and camera."),
            Noun("charging cable", 0.5, ("braided nylon", "silicone"), "USB-C to USB-C, two metres long."),
            Noun("wireless charger", 1.2, ("aluminium", "recycled plastic"),
                 "Charges compatible phones at up to 15 W."),
            Noun("power bank", 1.6, ("aluminium", "recycled plastic"),
                 "10,000 mAh, enough for two full phone charges."),
            Noun("laptop sleeve", 1.2, ("neoprene", "felt", "leather"), "Fits most 13 to 14 inch laptops."),
            Noun("USB-C hub", 1.7, ("aluminium",), "Adds HDMI, two USB-A ports and an SD card reader."),
            Noun("phone stand", 0.7, ("aluminium", "wood", "recycled plastic"),
                 "The angle adjusts for video calls and recipes."),
            Noun("earbuds case", 0.5, ("silicone", "leather"), "A snug fit, with a carabiner clip."),
        ),
    ),
    Category(
        "apparel", 0.13, 32.0, 0.5,
        ("Northmere", "Fieldhouse", "Loom & Lark", "Common Thread", "Saltmarsh", "Ashby & Vale"),
        ("navy", "charcoal", "oatmeal", "forest green", "burgundy", "black", "white", "camel", "rust", "heather grey"),
        "in {}",
        ("classic", "lightweight", "cosy", "timeless", "essential", "heritage"),
        ("everyday wear", "layering in autumn", "weekend walks", "the office", "travel"),
        (
            Noun("t-shirt", 0.6, ("organic cotton", "linen", "cotton"),
                 "Pre-washed for a soft feel and minimal shrinkage."),
            Noun("hoodie", 1.4, ("organic cotton", "fleece"), "Brushed inside, with a roomy front pocket."),
            Noun("scarf", 0.9, ("merino wool", "cashmere", "cotton"), "Long enough to wrap twice."),
            Noun("jumper", 1.6, ("merino wool", "cashmere", "cotton"), "Ribbed cuffs and hem that hold their shape."),
            Noun("beanie", 0.5, ("merino wool", "cashmere"), "One size, with a fold-up cuff."),
            Noun("shirt", 1.2, ("linen", "cotton", "organic cotton"), "Mother-of-pearl buttons and a curved hem."),
            Noun("socks", 0.35, ("merino wool", "cotton"), "A pack of three pairs with reinforced heels."),
            Noun("trousers", 1.5, ("cotton", "linen"), "Mid-rise, with an elasticated back waist."),
        ),
    ),
    Category(
        "toys & games", 0.09, 20.0, 0.6,
        ("Puddle & Pip", "Tinker Trove", "Brightbox", "Marble Hill", "Kitewood", "Hopscotch Lane"),
        ("red", "yellow", "sky blue", "green", "rainbow", "natural", "pastel pink", "orange"),
        "in {}",
        ("educational", "colourful", "classic", "award-winning", "creative", "heirloom"),
        ("ages 3 and up", "family game nights", "rainy afternoons", "birthday presents", "learning through play"),
        (
            Noun("building blocks", 1.0, ("wood", "recycled plastic"), "Sixty pieces in a storage tub."),
            Noun("jigsaw puzzle", 0.8, ("cardboard",), "1,000 pieces, with a poster for reference."),
            Noun("board game", 1.3, ("cardboard", "wood"), "For two to six players, about 30 minutes a game."),
            Noun("train set", 1.8, ("wood",), "Includes track pieces, a bridge and three carriages."),
            Noun("plush bear", 0.9, ("organic cotton", "recycled polyester"),
                 "Soft, machine washable and safe from birth."),
            Noun("stacking rings", 0.6, ("wood", "silicone"), "Helps little hands practise grip and sorting."),
            Noun("card game", 0.5, ("cardboard",), "Quick to learn, with rules for solo play."),
            Noun("kite", 0.9, ("ripstop nylon",), "Flies in light winds; line and winder included."),
        ),
    ),
    Category(
        "garden", 0.07, 26.0, 0.7,
        ("Greenacre", "Bramble & Bough", "Potting Shed Co.", "Fernhollow", "Wildmeadow"),
        ("sage green", "charcoal", "stone grey", "natural", "olive", "cream", "slate blue", "black"),
        "in {}",
        ("weatherproof", "sturdy", "frost-resistant", "space-saving", "classic", "heritage"),
        ("patios and balconies", "kitchen herbs", "raised beds", "allotments", "window sills"),
        (
            Noun("plant pot", 0.8, ("terracotta", "ceramic", "recycled plastic"),
                 "Drainage hole and matching saucer included."),
            Noun("watering can", 1.0, ("galvanised steel", "recycled plastic"),
                 "Holds five litres, with a removable rose."),
            Noun("garden trowel", 0.6, ("stainless steel", "carbon steel"),
                 "Ash handle and depth markings on the blade."),
            Noun("bird feeder", 0.9, ("galvanised steel", "wood"), "Hangs from a branch and keeps seed dry."),
            Noun("raised planter", 2.5, ("wood", "galvanised steel"), "Deep enough for root vegetables."),
            Noun("kneeling pad", 0.5, ("recycled rubber", "neoprene"), "Cushions knees on hard ground."),
            Noun("solar lantern", 1.1, ("glass", "galvanised steel"),
                 "Charges by day and glows for up to eight hours."),
            Noun("pruning shears", 0.9, ("carbon steel", "stainless steel"),
                 "Bypass blades cut stems up to 20 mm thick."),
        ),
    ),
    Category(
        "stationery", 0.08, 9.0, 0.5,
        ("Quillmark", "Papersmith", "Inkwell & Co.", "Margin Notes", "Foliage Press", "Nibley"),
        ("black", "navy", "forest green", "blush pink", "cream", "mustard yellow", "lilac", "terracotta"),
        "in {}",
        ("classic", "minimalist", "everyday", "elegant", "eco-friendly", "compact"),
        ("journalling", "meeting notes", "students", "bullet journals", "letter writing"),
        (
            Noun("notebook", 1.0, ("recycled paper", "leather", "linen"), "A5, with 192 pages of 100 gsm paper."),
            Noun("fountain pen", 2.5, ("brass", "aluminium", "resin"), "Medium nib; takes standard ink cartridges."),
            Noun("gel pen set", 0.7, ("recycled plastic",), "Eight quick-drying pens in a tin."),
            Noun("desk organiser", 1.6, ("wood", "felt", "recycled plastic"),
                 "Compartments for pens, clips and sticky notes."),
            Noun("greeting card set", 0.6, ("recycled paper",), "Ten blank cards with kraft envelopes."),
            Noun("planner", 1.3, ("recycled paper", "linen"), "Undated, so it can start in any month."),
            Noun("pencil case", 0.8, ("canvas", "felt", "leather"), "Zipped, with room for a full set of pens."),
        ),
    ),
    Category(
        "beauty", 0.09, 15.0, 0.5,
        ("Dewfall", "Marigold & Moss", "Sable Skin", "Pure Rowan", "Lumen Botanics", "Saltwell"),
        ("lavender", "rose", "citrus", "eucalyptus", "vanilla", "cucumber", "sandalwood", "peppermint"),
        "with a {} scent",
        ("nourishing", "gentle", "vegan", "lightweight", "hydrating", "refreshing"),
        ("dry skin", "daily routines", "sensitive skin", "pampering evenings", "travel bags"),
        (
            Noun("hand cream", 0.7, ("shea butter", "aloe vera", "oat"), "Absorbs quickly without a greasy feel."),
            Noun("face serum", 1.6, ("vitamin C", "hyaluronic acid", "rosehip oil"),
                 "A few drops morning and evening."),
            Noun("lip balm", 0.4, ("shea butter", "beeswax"), "Soothes chapped lips in cold weather."),
            Noun("body wash", 0.8, ("aloe vera", "oat", "shea butter"), "Sulphate-free and mild enough for daily use."),
            Noun("bath salts", 0.9, ("dead sea salt", "magnesium flakes"), "Dissolves quickly in warm water."),
            Noun("face mask", 1.0, ("clay", "charcoal", "oat"), "Leave on for ten minutes, then rinse."),
            Noun("shampoo bar", 0.7, ("argan oil", "coconut oil"), "Plastic-free, and lasts as long as two bottles."),
        ),
    ),
    Category(
        "sports & outdoors", 0.09, 28.0, 0.7,
        ("Summit Trail", "Ridgeback", "Tidewater", "Peakform", "Wayfarer Outdoor", "Cairnline"),
        ("black", "orange", "teal", "olive", "slate grey", "red", "cobalt blue", "sand"),
        "in {}",
        ("lightweight", "durable", "versatile", "all-weather", "rugged", "compact"),
        ("outdoor adventures", "weekend activities", "active lifestyles", "all seasons", "camping trips"),
        (
            Noun("yoga mat", 1.0, ("natural rubber", "cork", "recycled foam"), "6 mm thick, with a carry strap."),
            Noun("water bottle", 0.7, ("stainless steel", "recycled plastic"), "Keeps drinks cold for 24 hours."),
            Noun("resistance bands", 0.6, ("natural rubber", "woven fabric"), "Five bands, from light to extra heavy."),
            Noun("camping mug", 0.5, ("enamel", "titanium", "stainless steel"), "Stacks inside most cook sets."),
            Noun("hiking backpack", 2.5, ("ripstop nylon", "recycled polyester"),
                 "25 litres, with a rain cover and hip belt."),
            Noun("headlamp", 1.0, ("aluminium", "recycled plastic"), "300 lumens, rechargeable over USB-C."),
            Noun("foam roller", 0.8, ("EVA foam", "cork"), "A textured surface for recovery after training."),
            Noun("trekking poles", 1.6, ("aluminium", "carbon fibre"), "Adjustable, with flick locks and cork grips."),
        ),
    ),
    Category(
        "pet supplies", 0.07, 14.0, 0.6,
        ("Pawsworth", "Good Boy Goods", "Whisker & Co.", "Barkley Lane", "Tailwind Pets"),
        ("tan", "navy", "forest green", "grey", "red", "mustard yellow", "pink", "teal"),
        "in {}",
        ("durable", "classic", "easy-clean", "everyday", "premium", "eco-friendly"),
        ("everyday use", "new pet owners", "busy households", "spoiling a pet", "pets of all sizes"),
        (
            Noun("dog collar", 0.6, ("leather", "nylon webbing"), "Adjustable, with a solid brass buckle."),
            Noun("dog bed", 2.5, ("recycled polyester", "cotton canvas"),
                 "The cover comes off and goes in the washing machine."),
            Noun("cat scratcher", 1.0, ("sisal", "cardboard"), "Reversible, for twice the lifespan."),
            Noun("pet bowl", 0.6, ("stainless steel", "ceramic", "bamboo"),
                 "A non-slip base stops it sliding at mealtimes."),
            Noun("dog lead", 0.7, ("leather", "nylon webbing"), "1.5 metres long, with a padded handle."),
            Noun("cat toy set", 0.4, ("felt", "cotton"), "Five toys, some filled with catnip."),
            Noun("treat pouch", 0.5, ("canvas", "nylon webbing"), "Clips onto a belt for training walks."),
        ),
    ),
    Category(
        "jewellery", 0.06, 40.0, 0.65,
        ("Aurelle", "Fenwick & Finch", "Little Lune", "Goldcrest Studio", "Ondine", "Seren"),
        ("pearl", "moonstone", "turquoise", "onyx", "amethyst", "opal", "garnet", "emerald"),
        "with {} detail",
        ("delicate", "handmade", "minimalist", "statement", "everyday", "vintage-inspired"),
        ("everyday wear", "anniversaries", "layering", "birthday presents", "evenings out"),
        (
            Noun("pendant necklace", 1.2, _METALS, "Hangs on an adjustable 45 cm chain."),
            Noun("stud earrings", 0.8, _METALS, "Hypoallergenic posts with butterfly backs."),
            Noun("hoop earrings", 0.9, _METALS, "Lightweight, with a hinged click closure."),
            Noun("stacking ring", 0.7, _METALS, "Available in sizes J to S."),
            Noun("charm bracelet", 1.1, _METALS, "Adjusts to fit most wrists."),
            Noun("cufflinks", 1.3, ("sterling silver", "gold-plated brass"), "Presented in a gift box."),
        ),
    ),
    Category(
        "bags & travel", 0.07, 45.0, 0.6,
        ("Wanderly", "Harbour & Hide", "Kestrel Goods", "Porter Row", "Meridian Travel", "Farlander"),
        ("black", "tan", "olive", "navy", "sand", "burgundy", "cognac", "stone grey"),
        "in {}",
        ("water-resistant", "lightweight", "minimalist", "classic", "durable", "timeless"),
        ("weekend trips", "daily commutes", "business travel", "city breaks", "long-haul travel"),
        (
            Noun("backpack", 1.0, ("canvas", "recycled polyester", "leather"),
                 "A padded sleeve fits a 15 inch laptop."),
            Noun("tote bag", 0.6, ("canvas", "organic cotton", "leather"),
                 "An inner zip pocket keeps keys and cards safe."),
            Noun("weekend bag", 1.6, ("canvas", "leather"), "Large enough for three days away."),
            Noun("wash bag", 0.45, ("recycled polyester", "canvas"), "Wipe-clean lining and a hanging hook."),
            Noun("carry-on suitcase", 2.8, ("polycarbonate", "aluminium"),
                 "Fits most airline cabin limits, on four spinner wheels."),
            Noun("passport holder", 0.35, ("leather", "recycled polyester"), "Slots for boarding passes and cards."),
            Noun("crossbody bag", 0.9, ("leather", "recycled polyester", "canvas"),
                 "Adjustable strap and magnetic closure."),
        ),
    ),
)

# How much a material moves an item's price against its category's typical price.
MATERIAL_PRICE_FACTOR: dict[str, float] = {
    "9ct gold": 4.0, "acacia wood": 1.15, "aloe vera": 0.9, "aluminium": 1.3, "argan oil": 1.25, "bamboo": 0.85,
    "beeswax": 1.3, "braided nylon": 1.1, "brass": 1.4, "canvas": 0.9, "carbon fibre": 1.8, "carbon steel": 1.15,
    "cardboard": 0.8, "cashmere": 2.6, "cast iron": 1.35, "ceramic": 1.0, "charcoal": 1.0, "clay": 0.9,
    "coconut oil": 0.95, "coconut wax": 1.15, "cork": 1.2, "cotton": 0.9, "cotton canvas": 1.0,
    "dead sea salt": 1.1, "enamel": 0.95, "EVA foam": 0.8, "felt": 0.85, "fleece": 0.9, "galvanised steel": 1.1,
    "glass": 0.95, "gold-plated brass": 1.0, "hyaluronic acid": 1.3, "leather": 1.7, "linen": 1.3,
    "magnesium flakes": 1.0, "marble": 1.6, "merino wool": 1.6, "natural rubber": 1.15, "neoprene": 0.9,
    "nylon webbing": 0.85, "oat": 0.85, "olive wood": 1.4, "organic cotton": 1.15, "polycarbonate": 1.0,
    "recycled foam": 0.85, "recycled paper": 0.9, "recycled plastic": 0.8, "recycled polyester": 0.9,
    "recycled rubber": 0.85, "resin": 0.9, "ripstop nylon": 1.0, "rosehip oil": 1.2, "shea butter": 1.0,
    "silicone": 0.85, "sisal": 0.9, "soy wax": 1.0, "stainless steel": 1.05, "sterling silver": 1.6,
    "stoneware": 1.05, "terracotta": 0.85, "titanium": 2.0, "vitamin C": 1.3, "wood": 1.0, "woven fabric": 0.95,
}
MATERIAL_INDEX = {name: i for i, name in enumerate(MATERIAL_PRICE_FACTOR)}

COLD_START_DAYS = 7  # "new" items and users are those first seen in this many final days

# Catalogue and user base over time.
PRE_EXISTING_ITEM_SHARE = 0.6
PRE_EXISTING_ITEM_MAX_AGE_DAYS = 540
USERS_ACTIVE_FROM_START = 0.7
USER_TASTE_CONCENTRATION = 0.25  # Dirichlet total mass per category; low values give users a few favourites
USER_PRICE_LEVEL_SD = 0.6  # in standard deviations of log price within a category
USER_ACTIVITY_SIGMA = 1.0  # lognormal: most users visit rarely, a few visit very often

# Choosing items: popularity ~ rank^-ZIPF_EXPONENT, boosted while an item is new, damped away from the user's
# price level.
ZIPF_EXPONENT = 1.0
NOVELTY_BOOST = 3.0
NOVELTY_DECAY_DAYS = 7.0
PRICE_AFFINITY_WIDTH = 1.0

# Activity by hour of day (UTC), with busy lunchtimes and evenings; weekends are busier.
HOUR_WEIGHTS = np.array([
    0.6, 0.35, 0.2, 0.15, 0.12, 0.15, 0.3, 0.6, 0.9, 1.0, 1.05, 1.1,
    1.3, 1.25, 1.1, 1.05, 1.1, 1.2, 1.4, 1.7, 1.9, 1.85, 1.5, 1.0,
])
WEEKEND_BOOST = 1.25

# Sessions and the funnel.
P_SESSION_STARTS_WITH_SEARCH = 0.55
P_ANOTHER_VIEW = 0.72  # views per session are geometric, 1 / (1 - 0.72) = 3.6 on average
P_CLICK_AFTER_SEARCH = 0.4  # a user who searched knows what they want
P_CLICK_BROWSING = 0.3
P_ADD_TO_CART = 0.3
P_CHECKOUT = 0.55  # a session with a full cart goes on to check out...
P_BUY_CARTED_ITEM = 0.9  # ...and buys most of what is in it
QUANTITY_PROBS = np.array([0.86, 0.10, 0.03, 0.01])  # of 1, 2, 3, 4 units
GAP_MEDIAN_SECONDS = 25.0
GAP_SIGMA = 1.0

# Search queries name a few attributes of the item the user has in mind, always including the product noun.
# Results favour items that share the named attributes.
QUERY_TEMPLATES: tuple[tuple[tuple[str, ...], float], ...] = (
    (("variant", "material", "noun"), 0.15),
    (("material", "noun"), 0.2),
    (("variant_word", "noun"), 0.2),
    (("noun",), 0.3),
    (("brand", "noun"), 0.15),
)
QUERY_MATCH_BOOST = {"noun": 20.0, "material": 3.0, "variant": 3.0, "brand": 5.0}

TITLE_TEMPLATES = (
    ("{brand} {variant} {material} {noun}", 0.45),
    ("{brand} {adjective} {material} {noun}", 0.2),
    ("{brand} {adjective} {variant} {noun}", 0.2),
    ("{brand} {material} {noun}, {variant}", 0.15),
)
USE_CASE_PHRASES = ("Ideal for {}.", "Perfect for {}.", "A good choice for {}.")
DESCRIPTION_SENTENCE_PROBS = np.array([0.15, 0.35, 0.5])  # of 1, 2 or 3 sentences

SEARCH, VIEW, CLICK, ADD_TO_CART, PURCHASE = (EVENT_TYPES.index(name) for name in
                                              ("search", "view", "click", "add_to_cart", "purchase"))


def generate(out_dir: str | Path, config: GeneratorConfig = GeneratorConfig(), *, overwrite: bool = False) -> dict:
    """Write `catalog/catalog.jsonl` and `events/events-YYYY-MM-DD.jsonl` under `out_dir`; return a summary."""
    out_dir = Path(out_dir)
    catalog_dir, events_dir = out_dir / "catalog", out_dir / "events"
    _prepare_output_dirs((catalog_dir, events_dir), overwrite)

    rng = np.random.default_rng(config.seed)
    catalog = _make_catalog(config, rng)
    users = _make_users(config, rng)
    sessions = _sample_sessions(config, users, rng)
    log = _simulate(config, catalog, users, sessions, rng)
    glitches = _make_glitches(config, log, rng)

    (catalog_dir / "catalog.jsonl").write_text(_catalog_jsonl(config, catalog), encoding="utf-8")
    day_files = _write_event_files(events_dir, config, catalog, log, glitches)
    return _summary(config, catalog, log, glitches, files_written=1 + day_files)


def append_day(out_dir: str | Path, config: GeneratorConfig = GeneratorConfig()) -> Path:
    """Add the next day of logs to a data set that `generate(out_dir, config)` wrote (or that earlier calls extended):
    the same shop simulated one day longer, that day's events written as a new daily file. Event and session ids
    carry the date, so they never collide with the existing ones. Returns the new file."""
    import json
    import shutil
    import tempfile
    from dataclasses import replace
    from datetime import timedelta

    events_dir = Path(out_dir) / "events"
    existing = sorted(events_dir.glob("events-*.jsonl"))
    if not existing:
        raise FileNotFoundError(f"{events_dir}: no daily event files to extend (run generate first)")
    days = (date.fromisoformat(existing[-1].stem[len("events-"):]) - date.fromisoformat(config.start)).days + 2
    scratch = Path(tempfile.mkdtemp(prefix="rec_pipeline_day_"))
    try:
        generate(scratch, replace(config, days=days))
        new_day = (date.fromisoformat(config.start) + timedelta(days=days - 1)).isoformat()
        lines = []
        for line in (scratch / "events" / f"events-{new_day}.jsonl").read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            stamp = new_day.replace("-", "")
            record["event_id"], record["session_id"] = f"e{stamp}-{record['event_id'][1:]}", f"s{stamp}-{record['session_id'][1:]}"
            lines.append(_json_line(record))
    finally:
        shutil.rmtree(scratch)
    target = events_dir / f"events-{new_day}.jsonl"
    target.write_text("".join(lines), encoding="utf-8")
    return target


def _prepare_output_dirs(dirs: tuple[Path, ...], overwrite: bool) -> None:
    occupied = [d for d in dirs if d.is_dir() and any(d.iterdir())]
    if occupied and not overwrite:
        raise FileExistsError(
            f"{', '.join(map(str, occupied))} already contain(s) files; pass overwrite=True to replace them"
        )
    for directory in occupied:
        shutil.rmtree(directory)
    for directory in dirs:
        directory.mkdir(parents=True, exist_ok=True)


# --- catalogue ---------------------------------------------------------------------------------------------


@dataclass
class _Catalog:
    """Items in id order, which is also the order they were listed in; times are seconds from day 0."""

    category: np.ndarray
    noun: np.ndarray  # index into the category's nouns
    material: np.ndarray  # index into the noun's materials
    variant: np.ndarray
    brand: np.ndarray
    price: np.ndarray
    first_seen: np.ndarray
    by_category: list[_CategoryItems]

    def noun_name(self, item: int) -> str:
        return CATEGORIES[self.category[item]].nouns[self.noun[item]].name

    def material_name(self, item: int) -> str:
        noun = CATEGORIES[self.category[item]].nouns[self.noun[item]]
        return noun.materials[self.material[item]]


class _CategoryItems(NamedTuple):
    """One category's items sorted by listing time, so the items listed by time t are a prefix."""

    items: np.ndarray
    first_seen: np.ndarray
    popularity: np.ndarray
    price_z: np.ndarray  # log price standardised within the category
    attributes: dict[str, np.ndarray]  # per query attribute, a code that is equal when the attribute is


def _make_catalog(config: GeneratorConfig, rng: np.random.Generator) -> _Catalog:
    n = config.n_items
    n_old = round(n * PRE_EXISTING_ITEM_SHARE)
    n_new = n - n_old
    old_first_seen = -rng.uniform(1, PRE_EXISTING_ITEM_MAX_AGE_DAYS, n_old) * SECONDS_PER_DAY
    # Stratified over the window so that every day lists some new items.
    new_first_seen = (np.arange(n_new) + rng.random(n_new)) / max(n_new, 1) * config.days * SECONDS_PER_DAY
    first_seen = np.sort(np.concatenate([old_first_seen, new_first_seen]).astype(np.int64))

    shares = np.array([c.share for c in CATEGORIES])
    category = rng.choice(len(CATEGORIES), size=n, p=shares / shares.sum())
    noun = rng.integers(0, np.array([len(c.nouns) for c in CATEGORIES])[category])
    material = rng.integers(0, np.array([len(CATEGORIES[c].nouns[k].materials) for c, k in zip(category, noun)]))
    variant = rng.integers(0, np.array([len(c.variants) for c in CATEGORIES])[category])
    brand = rng.integers(0, np.array([len(c.brands) for c in CATEGORIES])[category])

    typical_price = np.array([
        CATEGORIES[c].median_price * CATEGORIES[c].nouns[k].price_factor
        * MATERIAL_PRICE_FACTOR[CATEGORIES[c].nouns[k].materials[m]]
        for c, k, m in zip(category, noun, material)
    ])
    sigma = np.array([c.price_sigma for c in CATEGORIES])[category]
    raw_price = np.maximum(typical_price * rng.lognormal(0.0, sigma), 1.0)
    # Shops price just under round numbers.
    price = np.round(np.floor(raw_price) + rng.choice([0.99, 0.95, 0.5, 0.0], size=n, p=[0.6, 0.15, 0.1, 0.15]), 2)

    popularity = (1.0 + rng.permutation(n)) ** -ZIPF_EXPONENT
    by_category = []
    for c in range(len(CATEGORIES)):
        items = np.flatnonzero(category == c)
        log_price = np.log(price[items])
        material_code = np.array([MATERIAL_INDEX[CATEGORIES[c].nouns[noun[i]].materials[material[i]]] for i in items],
                                 dtype=np.int64)
        by_category.append(_CategoryItems(
            items=items,
            first_seen=first_seen[items],
            popularity=popularity[items],
            price_z=_standardise(log_price),
            attributes={"noun": noun[items], "material": material_code, "variant": variant[items],
                        "brand": brand[items]},
        ))
    return _Catalog(category, noun, material, variant, brand, price, first_seen, by_category)


def _standardise(values: np.ndarray) -> np.ndarray:
    if len(values) < 2:
        return np.zeros(len(values))
    return (values - values.mean()) / max(values.std(), 1e-9)


def _catalog_jsonl(config: GeneratorConfig, catalog: _Catalog) -> str:
    # Choices that only affect wording come from a generator of their own, so rewording never shifts the events.
    rng = np.random.default_rng([config.seed, 1])
    n = len(catalog.category)
    adjective = rng.integers(0, np.array([len(c.adjectives) for c in CATEGORIES])[catalog.category])
    title_probs = np.array([p for _, p in TITLE_TEMPLATES])
    title_template = rng.choice(len(TITLE_TEMPLATES), size=n, p=title_probs / title_probs.sum())
    n_sentences = 1 + rng.choice(3, size=n, p=DESCRIPTION_SENTENCE_PROBS)
    use_case = rng.integers(0, np.array([len(c.use_cases) for c in CATEGORIES])[catalog.category])
    use_phrase = rng.integers(0, len(USE_CASE_PHRASES), size=n)
    joins_feature_and_use = rng.random(n) < 0.5
    first_seen = _iso(config, catalog.first_seen)

    lines = []
    for i in range(n):
        category = CATEGORIES[catalog.category[i]]
        noun = category.nouns[catalog.noun[i]]
        words = {
            "brand": category.brands[catalog.brand[i]],
            "variant": category.variants[catalog.variant[i]],
            "material": noun.materials[catalog.material[i]],
            "noun": noun.name,
            "adjective": category.adjectives[adjective[i]],
        }
        title = _title_case(TITLE_TEMPLATES[title_template[i]][0].format(**words))
        article = "An" if words["adjective"][0] in "aeiou" else "A"
        variant_text = category.variant_phrase.format(words["variant"])
        sentences = [f"{article} {words['adjective']} {words['material']} {noun.name} {variant_text}."]
        use = category.use_cases[use_case[i]]
        if n_sentences[i] == 3 and joins_feature_and_use[i]:
            sentences.append(f"{noun.feature[:-1]}; ideal for {use}.")
        elif n_sentences[i] >= 2:
            sentences.append(noun.feature)
            if n_sentences[i] == 3:
                sentences.append(USE_CASE_PHRASES[use_phrase[i]].format(use))
        record = dict(zip(CATALOG_COLUMNS, (
            _item_id(i), title, " ".join(sentences), category.name, words["brand"], float(catalog.price[i]),
            first_seen[i],
        )))
        lines.append(_json_line(record))
    return "".join(lines)


def _title_case(text: str) -> str:
    # str.title() would turn "USB-C" into "Usb-C" and "9ct" into "9Ct".
    return " ".join(word[:1].upper() + word[1:] for word in text.split(" "))


# --- users and sessions ------------------------------------------------------------------------------------


@dataclass
class _Users:
    arrival_day: np.ndarray
    activity: np.ndarray
    taste: np.ndarray  # (n_users, n_categories), rows sum to 1
    price_level: np.ndarray  # preferred log price, in standard deviations from a category's mean


def _make_users(config: GeneratorConfig, rng: np.random.Generator) -> _Users:
    n = config.n_users
    late = rng.random(n) >= USERS_ACTIVE_FROM_START
    # Ids follow sign-up order, as a user table's sequence would.
    arrival_day = np.sort(np.where(late, rng.integers(1, max(config.days, 2), size=n), 0))
    shares = np.array([c.share for c in CATEGORIES])
    alpha = USER_TASTE_CONCENTRATION * len(CATEGORIES) * shares / shares.sum()
    return _Users(
        arrival_day=np.minimum(arrival_day, config.days - 1),
        activity=rng.lognormal(0.0, USER_ACTIVITY_SIGMA, size=n),
        taste=rng.dirichlet(alpha, size=n),
        price_level=rng.normal(0.0, USER_PRICE_LEVEL_SD, size=n),
    )


@dataclass
class _Sessions:
    """A pool of independent candidate sessions; simulation uses them in order until it has enough events."""

    user: np.ndarray
    start: np.ndarray  # seconds from day 0
    category: np.ndarray
    starts_with_search: np.ndarray
    query_template: np.ndarray  # index into QUERY_TEMPLATES, for sessions that start with a search
    n_views: np.ndarray


def _sample_sessions(config: GeneratorConfig, users: _Users, rng: np.random.Generator) -> _Sessions:
    # Every session yields at least one event, so this many can never run out.
    n = config.n_events
    start_weekday = date.fromisoformat(config.start).weekday()
    day_weight = np.where((start_weekday + np.arange(config.days)) % 7 >= 5, WEEKEND_BOOST, 1.0)
    cumulative_day_weight = np.concatenate([[0.0], np.cumsum(day_weight)])

    # A user's share of sessions grows with their activity and with how much of the window they are around.
    user_weight = users.activity * (cumulative_day_weight[-1] - cumulative_day_weight[users.arrival_day])
    user = np.searchsorted(np.cumsum(user_weight), rng.random(n) * user_weight.sum(), side="right")
    user = np.minimum(user, config.n_users - 1)
    lower = cumulative_day_weight[users.arrival_day[user]]
    point = lower + rng.random(n) * (cumulative_day_weight[-1] - lower)
    day = np.clip(np.searchsorted(cumulative_day_weight, point, side="right") - 1, 0, config.days - 1)
    hour = rng.choice(24, size=n, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    start = day * SECONDS_PER_DAY + hour * 3600 + rng.integers(0, 3600, size=n)

    taste_cdf = np.cumsum(users.taste, axis=1)
    category = (taste_cdf[user] < rng.random(n)[:, None]).sum(axis=1)
    template_probs = np.array([p for _, p in QUERY_TEMPLATES])
    return _Sessions(
        user=user,
        start=start.astype(np.int64),
        category=np.minimum(category, len(CATEGORIES) - 1),
        starts_with_search=rng.random(n) < P_SESSION_STARTS_WITH_SEARCH,
        query_template=rng.choice(len(QUERY_TEMPLATES), size=n, p=template_probs / template_probs.sum()),
        n_views=rng.geometric(1.0 - P_ANOTHER_VIEW, size=n),
    )


# --- event simulation --------------------------------------------------------------------------------------


@dataclass
class _EventLog:
    """Clean events sorted by time, with session ids numbered by session start."""

    ts: np.ndarray  # seconds from day 0
    user: np.ndarray
    session: np.ndarray
    event_type: np.ndarray  # index into EVENT_TYPES
    item: np.ndarray  # -1 for searches
    quantity: np.ndarray  # 0 where not applicable
    unclicked_view: np.ndarray  # views that led nowhere: the rows a delisted item can stand in for
    query: list[str | None]
    n_sessions: int


def _simulate(config: GeneratorConfig, catalog: _Catalog, users: _Users, sessions: _Sessions,
              rng: np.random.Generator) -> _EventLog:
    end = config.days * SECONDS_PER_DAY
    quantity_cdf = np.cumsum(QUANTITY_PROBS)
    gap_log_median = np.log(GAP_MEDIAN_SECONDS)
    ts: list[int] = []
    pool_index: list[int] = []
    event_type: list[int] = []
    item_of_event: list[int] = []
    quantity: list[int] = []
    unclicked: list[bool] = []
    queries: list[str | None] = []

    def emit(t: int, s: int, kind: int, item: int = -1, qty: int = 0, query: str | None = None,
             dead_end: bool = False) -> None:
        ts.append(t)
        pool_index.append(s)
        event_type.append(kind)
        item_of_event.append(item)
        quantity.append(qty)
        queries.append(query)
        unclicked.append(dead_end)

    for s in range(len(sessions.user)):
        if len(ts) >= config.n_events:
            break
        pool = catalog.by_category[sessions.category[s]]
        t = int(sessions.start[s])
        n_listed = int(np.searchsorted(pool.first_seen, t, side="right"))
        if n_listed == 0:
            continue
        age_days = (t - pool.first_seen[:n_listed]) / SECONDS_PER_DAY
        price_gap = (pool.price_z[:n_listed] - users.price_level[sessions.user[s]]) / PRICE_AFFINITY_WIDTH
        weight = (pool.popularity[:n_listed] * (1.0 + NOVELTY_BOOST * np.exp(-age_days / NOVELTY_DECAY_DAYS))
                  * np.exp(-0.5 * price_gap**2))

        n_views = min(int(sessions.n_views[s]), n_listed)
        gaps = np.maximum(np.rint(rng.lognormal(gap_log_median, GAP_SIGMA, size=4 * n_views + 1)), 1).astype(int)
        gap_iter = iter(gaps.tolist())
        p_click = P_CLICK_BROWSING
        if sessions.starts_with_search[s]:
            wanted = int(np.searchsorted(np.cumsum(weight), rng.random() * weight.sum(), side="right"))
            wanted = min(wanted, n_listed - 1)
            query, named = _search_query(catalog, int(pool.items[wanted]), int(sessions.query_template[s]))
            for attribute in named:
                codes = pool.attributes[attribute][:n_listed]
                weight = weight * np.where(codes == codes[wanted], QUERY_MATCH_BOOST[attribute], 1.0)
            emit(t, s, SEARCH, query=query)
            t += next(gap_iter)
            p_click = P_CLICK_AFTER_SEARCH

        # Gumbel top-k: a weighted sample without replacement, in the order a user would come across them.
        keys = np.log(weight) - np.log(-np.log(rng.random(n_listed)))
        viewed = pool.items[np.argsort(-keys)[:n_views]].tolist()
        u = rng.random((4, n_views))
        clicked = u[0] < p_click
        carted = clicked & (u[1] < P_ADD_TO_CART)
        units = (np.minimum(np.searchsorted(quantity_cdf, u[2], side="right"), len(QUANTITY_PROBS) - 1) + 1).tolist()
        bought = carted & (u[3] < P_BUY_CARTED_ITEM) & (rng.random() < P_CHECKOUT)

        for k, item in enumerate(viewed):
            if t >= end:
                break
            emit(t, s, VIEW, item, dead_end=not clicked[k])
            if clicked[k]:
                t += next(gap_iter)
                if t < end:
                    emit(t, s, CLICK, item)
                if carted[k]:
                    t += next(gap_iter)
                    if t < end:
                        emit(t, s, ADD_TO_CART, item, units[k])
            t += next(gap_iter)
        for k in np.flatnonzero(bought).tolist():
            t += next(gap_iter)
            if t < end:
                emit(t, s, PURCHASE, viewed[k], units[k])

    ts_array = np.array(ts, dtype=np.int64)
    pool_array = np.array(pool_index, dtype=np.int64)
    used_sessions = np.unique(pool_array)
    session_rank = np.empty(len(sessions.user), dtype=np.int64)
    session_rank[used_sessions[np.lexsort((used_sessions, sessions.start[used_sessions]))]] = np.arange(
        len(used_sessions))
    session = session_rank[pool_array]
    # Within a session events are emitted in time order, so the emit position breaks ties between equal ts.
    order = np.lexsort((np.arange(len(ts_array)), session, ts_array))
    return _EventLog(
        ts=ts_array[order],
        user=sessions.user[pool_array][order],
        session=session[order],
        event_type=np.array(event_type, dtype=np.int64)[order],
        item=np.array(item_of_event, dtype=np.int64)[order],
        quantity=np.array(quantity, dtype=np.int64)[order],
        unclicked_view=np.array(unclicked, dtype=bool)[order],
        query=[queries[i] for i in order.tolist()],
        n_sessions=len(used_sessions),
    )


def _search_query(catalog: _Catalog, item: int, template: int) -> tuple[str, tuple[str, ...]]:
    """A lower-case query naming some attributes of `item`, and which attributes it names."""
    parts, _ = QUERY_TEMPLATES[template]
    category = CATEGORIES[catalog.category[item]]
    variant = category.variants[catalog.variant[item]]
    words = {
        "variant": variant,
        "variant_word": variant.split(" ")[-1],  # "sage green" -> "green"
        "material": catalog.material_name(item),
        "noun": catalog.noun_name(item),
        "brand": category.brands[catalog.brand[item]],
    }
    named = tuple("variant" if part == "variant_word" else part for part in parts)
    return " ".join(words[part] for part in parts).lower(), named


# --- glitches ----------------------------------------------------------------------------------------------


@dataclass
class _Glitches:
    duplicated: np.ndarray  # bool per clean event: re-sent once more by a retrying client
    delisted: np.ndarray  # per clean event, index into delisted_ids, or -1
    delisted_ids: list[str]
    delisted_prices: np.ndarray


def _make_glitches(config: GeneratorConfig, log: _EventLog, rng: np.random.Generator) -> _Glitches:
    n = len(log.ts)
    n_glitches = round(config.dirty_fraction * n)
    n_duplicates = n_glitches // 2
    # A view that led nowhere can be swapped for a delisted item without breaking a click -> cart chain.
    candidates = np.flatnonzero(log.unclicked_view)
    n_delisted_events = min(n_glitches - n_duplicates, len(candidates))

    delisted = np.full(n, -1, dtype=np.int64)
    n_delisted_items = max(1, n_delisted_events // 3)
    delisted_numbers = DELISTED_ID_BASE + rng.choice(1_000_000 - DELISTED_ID_BASE, n_delisted_items, replace=False)
    chosen = rng.choice(candidates, n_delisted_events, replace=False)
    delisted[chosen] = rng.integers(0, n_delisted_items, size=n_delisted_events)

    duplicated = np.zeros(n, dtype=bool)
    duplicated[rng.choice(np.flatnonzero(delisted < 0), n_duplicates, replace=False)] = True
    return _Glitches(
        duplicated=duplicated,
        delisted=delisted,
        delisted_ids=[_item_id(int(k)) for k in np.sort(delisted_numbers)],
        delisted_prices=np.floor(rng.lognormal(np.log(20.0), 0.6, size=n_delisted_items)) + 0.99,
    )


# --- output ------------------------------------------------------------------------------------------------


def _write_event_files(events_dir: Path, config: GeneratorConfig, catalog: _Catalog, log: _EventLog,
                       glitches: _Glitches) -> int:
    iso = _iso(config, log.ts)
    day = log.ts // SECONDS_PER_DAY
    prices = catalog.price.tolist()
    delisted_prices = glitches.delisted_prices.tolist()
    event_type, item, quantity = log.event_type.tolist(), log.item.tolist(), log.quantity.tolist()
    user, session, delisted = log.user.tolist(), log.session.tolist(), glitches.delisted.tolist()
    duplicated = glitches.duplicated.tolist()

    day_starts = np.flatnonzero(np.diff(day, prepend=-1))
    day_ends = np.append(day_starts[1:], len(day))
    for first, last in zip(day_starts.tolist(), day_ends.tolist()):
        lines = []
        for i in range(first, last):
            kind = event_type[i]
            if kind == SEARCH:
                item_id = price = qty = None
            elif delisted[i] >= 0:
                item_id, price = glitches.delisted_ids[delisted[i]], delisted_prices[delisted[i]]
                qty = None
            else:
                item_id, price = _item_id(item[i]), prices[item[i]]
                qty = quantity[i] if kind in (ADD_TO_CART, PURCHASE) else None
            record = dict(zip(EVENT_COLUMNS, (
                f"e{i + 1:07d}", iso[i], f"u{user[i]:05d}", f"s{session[i] + 1:06d}", EVENT_TYPES[kind], item_id,
                log.query[i], price, qty,
            )))
            line = _json_line(record)
            lines.append(line + line if duplicated[i] else line)
        (events_dir / f"events-{iso[first][:10]}.jsonl").write_text("".join(lines), encoding="utf-8")
    return len(day_starts)


def _summary(config: GeneratorConfig, catalog: _Catalog, log: _EventLog, glitches: _Glitches,
             files_written: int) -> dict:
    lines_per_event = 1 + glitches.duplicated.astype(np.int64)
    recent = (config.days - COLD_START_DAYS) * SECONDS_PER_DAY
    catalog_events = (log.item >= 0) & (glitches.delisted < 0)
    never = np.iinfo(np.int64).max
    first_event_of_user = np.full(config.n_users, never)
    np.minimum.at(first_event_of_user, log.user, log.ts)
    events_per_type = np.bincount(log.event_type, weights=lines_per_event, minlength=len(EVENT_TYPES))
    events_per_category = np.bincount(catalog.category[log.item[catalog_events]],
                                      weights=lines_per_event[catalog_events], minlength=len(CATEGORIES))
    return {
        "items": len(catalog.category),
        "users": int(len(np.unique(log.user))),
        "events": int(lines_per_event.sum()),
        "sessions": log.n_sessions,
        "events_per_type": {name: int(count) for name, count in zip(EVENT_TYPES, events_per_type)},
        "items_per_category": {c.name: int((catalog.category == k).sum()) for k, c in enumerate(CATEGORIES)},
        "events_per_category": {c.name: int(count) for c, count in zip(CATEGORIES, events_per_category)},
        "cold_start_items": int((catalog.first_seen >= recent).sum()),
        "new_users": int(((first_event_of_user >= recent) & (first_event_of_user != never)).sum()),
        "files_written": files_written,
        "duplicate_events": int(glitches.duplicated.sum()),
        "unknown_item_events": int((glitches.delisted >= 0).sum()),
    }


def _iso(config: GeneratorConfig, seconds_from_start: np.ndarray) -> list[str]:
    moments = np.datetime64(config.start, "s") + seconds_from_start.astype("timedelta64[s]")
    return [text + "Z" for text in np.datetime_as_string(moments, unit="s").tolist()]


def _item_id(number: int) -> str:
    return f"i{number:06d}"


_JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # json.dumps would build one per call


def _json_line(record: dict) -> str:
    return _JSON_ENCODER.encode(record) + "\n"

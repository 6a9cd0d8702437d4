"""Words of the synthetic marketplace: category tree, attributes, brands, title and query parts.

Data only (plus two tiny helpers at the bottom). ``marketplace.py`` turns these lists into tables.

A leaf is written ``"noun|synonym, synonym|base price"``: the noun is what titles mostly say, the
synonyms are what shoppers often type instead (so query words are often absent from titles), the
base price (EUR) anchors the leaf's log-normal price level. Leaves of a top category with
``audiences`` are repeated per audience ("Women's Jeans", "Men's Jeans", ...), as real shops do;
that also makes titles of different leaves share most of their words.
"""

from __future__ import annotations

from typing import NamedTuple


class Top(NamedTuple):
    name: str
    domain: str  # which attribute vocabulary its leaves draw from (ATTRIBUTES key)
    gender_lean: float  # > 0 leans to women, < 0 to men; drives users' category interests
    age_lean: float  # > 0 leans older, < 0 younger (age bands mapped to [-1, 1])
    vague: tuple[str, ...]  # loose words shoppers use for the whole category
    mids: dict[str, str]  # middle category -> "leaf; leaf; ..." (see module docstring)
    audiences: tuple[str, ...] = ()  # "Women's", "Men's", "Kids'": leaves split per audience


TREE: tuple[Top, ...] = (
    Top(
        "Clothing",
        "apparel",
        0.2,
        -0.2,
        ("clothes", "outfit", "fashion", "something to wear"),
        {
            "Tops": "t-shirt|tee, tshirt|18; shirt|button down, button-up|35; hoodie|sweatshirt, hooded jumper|45; sweater|jumper, pullover, knitwear|50",
            "Bottoms": "jeans|denim pants, denims|55; trousers|pants, slacks|45; shorts|short pants, bermudas|25; leggings|tights, yoga pants|22",
            "Outerwear": "jacket|coat, windbreaker|90; parka|winter coat, puffer|140; raincoat|rain jacket, waterproof jacket|70; vest|gilet, bodywarmer|45",
        },
        ("Women's", "Men's", "Kids'"),
    ),
    Top(
        "Shoes",
        "footwear",
        0.1,
        -0.1,
        ("shoes", "footwear", "kicks"),
        {
            "Sneakers": "sneaker|trainers, running shoes, sneakers|75; high top sneaker|basketball shoes, high tops|85; slip-on sneaker|loafers, slip ons|55",
            "Boots": "ankle boot|booties, chelsea boots|95; hiking boot|trekking boots, walking boots|120; rain boot|wellies, wellington boots|40",
            "Sandals": "sandal|flip flops, sliders|30; slipper|house shoes, mules|20; espadrille|canvas shoes, summer shoes|35",
        },
        ("Women's", "Men's"),
    ),
    Top(
        "Bags & Accessories",
        "apparel",
        0.4,
        0.0,
        ("accessories", "bags", "gift for her"),
        {
            "Bags": "backpack|rucksack, daypack, school bag|50; handbag|purse, shoulder bag, tote|80; wallet|billfold, card holder, purse|30; duffel bag|gym bag, weekender, holdall|55",
            "Headwear": "beanie|knit hat, winter hat, toque|15; baseball cap|cap, snapback, trucker hat|18; sun hat|bucket hat, panama hat|22",
            "Small Accessories": "scarf|shawl, neck warmer|25; belt|waist belt, leather belt|28; sunglasses|shades, sun glasses|45; gloves|mittens, winter gloves|22",
        },
    ),
    Top(
        "Jewelry & Watches",
        "jewelry",
        0.5,
        0.2,
        ("jewellery", "bling", "anniversary gift"),
        {
            "Jewelry": "necklace|pendant, chain|60; earrings|studs, hoops, ear rings|40; bracelet|bangle, wristband, cuff|45; ring|band, engagement ring|90",
            "Watches": "wristwatch|watch, analog watch, timepiece|150; smartwatch|fitness watch, smart watch|220; watch strap|watch band, bracelet strap|25",
            "Jewelry Care": "jewelry box|jewellery organizer, ring box|35; jewelry cleaner|polishing cloth, silver cleaner|12; ring sizer|finger gauge, ring gauge|8",
        },
    ),
    Top(
        "Electronics",
        "tech",
        -0.3,
        -0.3,
        ("electronics", "gadgets", "tech gift"),
        {
            "Audio": "headphones|earphones, headset, cans|90; wireless earbuds|earbuds, in-ear headphones, airpods|80; bluetooth speaker|portable speaker, wireless speaker|60; soundbar|tv speaker, home theater bar|200",
            "Phones & Tablets": "smartphone|mobile phone, cell phone, phone|450; tablet|ipad, tab, e-reader|350; phone case|phone cover, protective case|15; power bank|portable charger, battery pack|30",
            "Cameras": "digital camera|compact camera, point and shoot|400; action camera|sports camera, gopro|250; tripod|camera stand, monopod|40; memory card|sd card, micro sd|20",
        },
    ),
    Top(
        "Computers",
        "tech",
        -0.4,
        -0.2,
        ("computer stuff", "pc", "home office"),
        {
            "Laptops": "laptop|notebook, notebook computer|900; laptop sleeve|laptop case, laptop bag|30; laptop stand|notebook riser, laptop riser|35",
            "Peripherals": "keyboard|mechanical keyboard, keys|70; mouse|computer mouse, wireless mouse|30; monitor|screen, display|250; webcam|web camera, video camera|60",
            "Storage": "external hard drive|portable hdd, backup drive|80; usb flash drive|usb stick, thumb drive, pen drive|15; ssd|solid state drive, nvme|90",
        },
    ),
    Top(
        "Gaming",
        "tech",
        -0.6,
        -0.7,
        ("gaming", "games", "gamer gift"),
        {
            "Consoles": "game console|console, gaming system|400; controller|gamepad, joystick, joypad|60; handheld console|portable console, handheld|300",
            "Gaming Gear": "gaming headset|gamer headphones, headset with mic|80; gaming chair|racing chair, gamer chair|220; gaming mouse pad|mousepad, desk mat|20",
            "Video Games": "video game|game, pc game|50; gift card|game voucher, store credit|25; game capture card|capture card, streaming card|150",
        },
    ),
    Top(
        "Home & Furniture",
        "home",
        0.2,
        0.4,
        ("home decor", "furniture", "something for the home"),
        {
            "Living Room": "sofa|couch, settee, loveseat|650; coffee table|side table, cocktail table|150; bookshelf|bookcase, shelving unit|120; armchair|accent chair, lounge chair|280",
            "Bedroom": "bed frame|bed, bedstead|400; mattress|memory foam mattress, bed mattress|450; duvet cover|quilt cover, bedding set, comforter cover|55; pillow|bed pillow, cushion|30",
            "Decor": "wall art|poster, canvas print, framed print|45; vase|flower vase, planter pot|30; mirror|wall mirror, looking glass|80; throw blanket|throw, blanket, plaid|40",
        },
    ),
    Top(
        "Kitchen",
        "kitchen",
        0.2,
        0.3,
        ("kitchen stuff", "cooking", "kitchen gadgets"),
        {
            "Appliances": "electric kettle|water boiler, tea kettle|35; toaster|bread toaster, sandwich toaster|40; blender|smoothie maker, mixer|70; coffee machine|coffee maker, espresso machine|180",
            "Cookware": "frying pan|skillet, fry pan, saute pan|40; saucepan|cooking pot, stock pot|35; dutch oven|casserole dish, cocotte|90; wok|stir fry pan|45",
            "Tableware": "dinner plate|plates, dinnerware|30; mug|coffee cup, tea cup|12; wine glass|stemware, glasses|25; cutlery set|flatware, silverware|45",
        },
    ),
    Top(
        "Beauty",
        "beauty",
        0.8,
        0.0,
        ("beauty", "makeup", "pamper gift", "self care"),
        {
            "Skincare": "face cream|moisturizer, moisturiser, day cream|30; serum|face serum, booster|35; sunscreen|sun cream, spf, sunblock|18; face mask|sheet mask, clay mask|15",
            "Makeup": "lipstick|lip colour, lip stick|20; mascara|lash mascara, lash lengthener|18; foundation|base makeup, concealer|30; eyeshadow palette|eye shadow, palette|35",
            "Hair Care": "shampoo|hair wash, hair shampoo|12; hair dryer|blow dryer, hairdryer|60; hair straightener|flat iron, straightening iron|55; hair oil|hair serum, hair treatment|20",
        },
    ),
    Top(
        "Health & Personal Care",
        "beauty",
        0.3,
        0.5,
        ("health", "personal care", "wellness"),
        {
            "Oral Care": "electric toothbrush|sonic toothbrush, power toothbrush|60; toothpaste|dental cream, tooth paste|5; water flosser|oral irrigator, dental flosser|50",
            "Shaving": "electric shaver|razor, shaver|80; beard trimmer|trimmer, clipper|45; shaving cream|shave gel, shaving foam|8",
            "Wellness": "massage gun|percussion massager, massager|120; bathroom scale|scales, body weight scale|35; vitamins|supplements, multivitamin|20",
        },
    ),
    Top(
        "Sports & Fitness",
        "sport",
        -0.2,
        -0.2,
        ("sports", "fitness", "workout gear"),
        {
            "Fitness": "yoga mat|exercise mat, gym mat|30; dumbbell|hand weights, free weights|40; resistance band|exercise band, workout band|15; kettlebell|weight kettle|45",
            "Cycling": "bike helmet|cycling helmet, bicycle helmet|60; bike light|bicycle light, cycle lamp|25; bike lock|bicycle lock, u-lock, chain lock|35",
            "Team Sports": "football|soccer ball, ball|25; basketball|hoop ball, b-ball|30; tennis racket|racquet, tennis racquet|80",
        },
    ),
    Top(
        "Outdoor & Camping",
        "sport",
        -0.3,
        0.1,
        ("outdoors", "camping gear", "adventure"),
        {
            "Camping": "tent|camping tent, pop up tent|150; sleeping bag|sleeping sack, camping bag|70; camping stove|gas stove, portable stove|45; headlamp|head torch, head light|25",
            "Hiking": "trekking poles|walking sticks, hiking poles|45; water bottle|drinking bottle, flask, bottle|20; hydration pack|camel bag, water backpack|50",
            "Fishing": "fishing rod|rod, fishing pole|70; fishing reel|reel, spinning reel|55; tackle box|lure box, fishing box|30",
        },
    ),
    Top(
        "Toys & Games",
        "toy",
        0.1,
        0.1,
        ("toys", "gift for kids", "present for a child"),
        {
            "Building Toys": "building blocks|bricks, construction set, lego|40; magnetic tiles|magnet blocks, magnetic blocks|45; marble run|ball track, marble track|35",
            "Dolls & Figures": "doll|baby doll, fashion doll|25; action figure|figurine, toy figure|20; plush toy|stuffed animal, teddy bear, soft toy|18",
            "Games & Puzzles": "jigsaw puzzle|puzzle, jigsaw|18; board game|family game, tabletop game|35; card game|playing cards, party game|15",
        },
    ),
    Top(
        "Baby",
        "toy",
        0.4,
        -0.2,
        ("baby stuff", "baby shower gift", "newborn"),
        {
            "Feeding": "baby bottle|feeding bottle, infant bottle|15; high chair|feeding chair, baby chair|120; bib|baby bib, feeding bib|8",
            "Travel": "stroller|pram, pushchair, buggy|350; car seat|baby car seat, infant seat|200; baby carrier|baby sling, wrap carrier|80",
            "Nursery": "baby monitor|video monitor, audio monitor|90; crib|cot, baby bed|250; changing mat|changing pad, diaper mat|25",
        },
    ),
    Top(
        "Pet Supplies",
        "pet",
        0.1,
        0.2,
        ("pet stuff", "for my dog", "pet gift"),
        {
            "Dogs": "dog food|kibble, dry dog food|45; dog bed|dog cushion, dog basket|55; dog leash|dog lead, leash|20; dog toy|chew toy, squeaky toy|12",
            "Cats": "cat food|wet cat food, kitten food|30; cat litter|litter, kitty litter|18; cat tree|scratching post, cat tower|80",
            "Small Pets & Fish": "aquarium|fish tank, tank|90; bird cage|aviary, parrot cage|70; hamster cage|rodent cage, small animal cage|50",
        },
    ),
    Top(
        "Garden",
        "garden",
        0.0,
        0.6,
        ("garden", "gardening", "backyard"),
        {
            "Garden Tools": "lawn mower|mower, grass cutter|250; hedge trimmer|hedge cutter, shrub trimmer|90; garden hose|hose pipe, water hose|35; pruning shears|secateurs, pruners|20",
            "Outdoor Furniture": "garden chair|patio chair, outdoor chair|70; parasol|sun umbrella, patio umbrella|60; hammock|swing bed, hanging bed|50",
            "Plants & Pots": "plant pot|planter, flower pot|20; raised bed|planter box, garden bed|80; compost bin|composter, garden bin|45",
        },
    ),
    Top(
        "Tools & DIY",
        "tool",
        -0.7,
        0.3,
        ("tools", "diy", "gift for dad"),
        {
            "Power Tools": "cordless drill|drill driver, power drill, drill|90; circular saw|power saw, saw|110; angle grinder|grinder, disc cutter|70; jigsaw|scroll saw, jig saw|75",
            "Hand Tools": "screwdriver set|screwdrivers, bit set|25; hammer|claw hammer, mallet|18; socket set|ratchet set, spanner set|55; tape measure|measuring tape, tape rule|12",
            "Workshop": "tool box|toolbox, tool chest|45; workbench|work table, tool bench|150; ladder|step ladder, stepladder|90",
        },
    ),
    Top(
        "Automotive",
        "tool",
        -0.6,
        0.2,
        ("car stuff", "car accessories", "for my car"),
        {
            "Car Care": "car wax|car polish, paste wax|18; pressure washer|jet washer, power washer|150; car vacuum|handheld vacuum, car hoover|45",
            "Car Electronics": "dash cam|dashboard camera, car camera|80; car charger|usb car charger, car adapter|15; tyre inflator|air compressor, tire pump|40",
            "Interior": "seat cover|car seat cover, seat protector|40; floor mats|car mats, floor liners|35; phone holder|car mount, phone mount|18",
        },
    ),
    Top(
        "Office & Stationery",
        "home",
        0.1,
        0.3,
        ("office supplies", "stationery", "back to school"),
        {
            "Writing": "notebook|journal, notepad, exercise book|10; pen|ballpoint, gel pen, pens|8; fountain pen|ink pen, calligraphy pen|45",
            "Office Furniture": "office chair|desk chair, ergonomic chair|180; standing desk|sit stand desk, height adjustable desk|350; desk lamp|reading lamp, table lamp|35",
            "Organisation": "file folder|document folder, binder|8; desk organizer|desk tidy, pen holder|20; label maker|label printer, labeller|40",
        },
    ),
)

# Attribute vocabularies per domain. Each leaf uses a seeded subset, so the words depend on the leaf.
ATTRIBUTES: dict[str, dict[str, tuple[str, ...]]] = {
    "apparel": {
        "color": (
            "black",
            "white",
            "navy",
            "grey",
            "beige",
            "red",
            "olive",
            "pink",
            "burgundy",
            "sky blue",
            "mustard",
            "cream",
        ),
        "material": (
            "cotton",
            "linen",
            "wool",
            "denim",
            "polyester",
            "cashmere",
            "silk",
            "fleece",
            "organic cotton",
            "leather",
        ),
        "size": ("XS", "S", "M", "L", "XL", "XXL"),
        "style": (
            "casual",
            "slim fit",
            "oversized",
            "classic",
            "vintage",
            "sporty",
            "elegant",
            "streetwear",
            "boho",
            "minimalist",
        ),
    },
    "footwear": {
        "color": ("black", "white", "brown", "tan", "navy", "grey", "red", "olive", "pink"),
        "material": ("leather", "suede", "canvas", "mesh", "synthetic", "rubber", "knit"),
        "size": ("EU 36", "EU 37", "EU 38", "EU 39", "EU 40", "EU 41", "EU 42", "EU 43", "EU 44", "EU 45"),
        "style": ("casual", "running", "classic", "chunky", "minimalist", "retro", "hiking", "elegant", "streetwear"),
    },
    "tech": {
        "color": ("black", "white", "silver", "space grey", "midnight blue", "rose gold", "graphite", "green"),
        "material": ("aluminium", "plastic", "glass", "silicone", "carbon fibre", "stainless steel"),
        "size": ("32GB", "64GB", "128GB", "256GB", "512GB", "compact", "13 inch", "15 inch"),
        "style": (
            "wireless",
            "gaming",
            "pro",
            "compact",
            "ergonomic",
            "smart",
            "portable",
            "rgb",
            "noise cancelling",
            "retro",
        ),
    },
    "home": {
        "color": ("white", "grey", "beige", "black", "sage green", "terracotta", "navy", "natural", "mustard", "blush"),
        "material": ("oak", "pine", "velvet", "linen", "rattan", "marble", "ceramic", "metal", "glass", "bamboo"),
        "size": ("small", "medium", "large", "40x40 cm", "160x200 cm", "2-seater", "3-seater"),
        "style": (
            "modern",
            "scandinavian",
            "vintage",
            "industrial",
            "boho",
            "minimalist",
            "rustic",
            "mid-century",
            "classic",
            "elegant",
        ),
    },
    "kitchen": {
        "color": ("silver", "black", "white", "red", "cream", "copper", "sage green", "matte black"),
        "material": ("stainless steel", "cast iron", "glass", "ceramic", "bamboo", "non-stick", "copper", "porcelain"),
        "size": ("1.7L", "1L", "20 cm", "24 cm", "28 cm", "4-piece", "6-piece", "12-piece"),
        "style": ("retro", "modern", "professional", "compact", "classic", "rustic", "minimalist", "smart"),
    },
    "beauty": {
        "color": ("nude", "rose", "coral", "berry", "clear", "gold", "bronze", "natural"),
        "material": (
            "vegan",
            "organic",
            "paraben-free",
            "hyaluronic",
            "vitamin c",
            "argan oil",
            "shea butter",
            "charcoal",
        ),
        "size": ("30ml", "50ml", "100ml", "200ml", "travel size", "value pack"),
        "style": ("long-lasting", "matte", "hydrating", "gentle", "luxury", "natural", "sensitive skin", "anti-aging"),
    },
    "sport": {
        "color": ("black", "blue", "red", "neon yellow", "grey", "green", "orange", "white"),
        "material": ("neoprene", "nylon", "polyester", "rubber", "steel", "foam", "carbon", "mesh"),
        "size": ("S", "M", "L", "XL", "5 kg", "10 kg", "one size", "2-person"),
        "style": ("pro", "training", "outdoor", "lightweight", "competition", "beginner", "waterproof", "breathable"),
    },
    "toy": {
        "color": ("multicolour", "pink", "blue", "red", "yellow", "green", "purple", "rainbow"),
        "material": ("wood", "plastic", "plush", "cardboard", "metal", "fabric", "silicone"),
        "size": ("mini", "small", "large", "100 pieces", "500 pieces", "1000 pieces", "ages 3+", "ages 8+"),
        "style": ("educational", "classic", "interactive", "creative", "montessori", "collectible", "outdoor", "STEM"),
    },
    "pet": {
        "color": ("brown", "black", "grey", "blue", "red", "pink", "green", "beige"),
        "material": ("nylon", "cotton", "rubber", "plush", "stainless steel", "leather", "natural"),
        "size": ("XS", "S", "M", "L", "XL", "1 kg", "2 kg", "12 kg"),
        "style": ("durable", "grain-free", "orthopedic", "reflective", "interactive", "senior", "puppy", "natural"),
    },
    "jewelry": {
        "color": ("gold", "silver", "rose gold", "black", "pearl white", "emerald", "ruby red", "blue"),
        "material": (
            "sterling silver",
            "14k gold",
            "stainless steel",
            "titanium",
            "leather",
            "pearl",
            "crystal",
            "ceramic",
        ),
        "size": ("small", "16 inch", "18 inch", "7 inch", "adjustable", "40 mm", "42 mm"),
        "style": ("elegant", "minimalist", "vintage", "statement", "classic", "boho", "sporty", "luxury"),
    },
    "garden": {
        "color": ("green", "black", "grey", "terracotta", "white", "natural"),
        "material": ("wood", "metal", "plastic", "rattan", "teak", "aluminium", "ceramic", "polyester"),
        "size": ("small", "large", "30 cm", "50 L", "10 m", "4-seater", "2-seater"),
        "style": ("outdoor", "weatherproof", "foldable", "solar", "rustic", "modern", "classic", "heavy duty"),
    },
    "tool": {
        "color": ("yellow", "black", "red", "blue", "orange", "green", "grey"),
        "material": ("steel", "chrome vanadium", "aluminium", "fibreglass", "rubber grip", "titanium"),
        "size": ("18V", "12V", "20V", "compact", "10-piece", "50-piece", "5 m", "25 mm"),
        "style": ("cordless", "heavy duty", "professional", "brushless", "compact", "diy", "industrial", "ergonomic"),
    },
}
ATTRIBUTE_NAMES: tuple[str, ...] = ("color", "material", "size", "style")

# Who a style or colour appeals to: (gender lean, age lean), same signs as Top. Unlisted words are 0.
LEANS: dict[str, tuple[float, float]] = {
    "elegant": (0.5, 0.3),
    "boho": (0.5, -0.2),
    "streetwear": (-0.1, -0.7),
    "vintage": (0.1, 0.4),
    "classic": (0.0, 0.6),
    "sporty": (-0.2, -0.3),
    "gaming": (-0.5, -0.7),
    "rgb": (-0.4, -0.7),
    "luxury": (0.3, 0.4),
    "heavy duty": (-0.6, 0.2),
    "industrial": (-0.4, 0.0),
    "oversized": (0.1, -0.6),
    "slim fit": (-0.1, -0.3),
    "chunky": (0.2, -0.6),
    "retro": (0.0, 0.3),
    "statement": (0.5, -0.2),
    "anti-aging": (0.5, 0.8),
    "professional": (-0.2, 0.4),
    "montessori": (0.3, -0.1),
    "cute": (0.6, -0.4),
    "scandinavian": (0.3, 0.1),
    "mid-century": (0.1, 0.5),
    "rustic": (0.0, 0.5),
    "hiking": (-0.2, 0.3),
    "pink": (0.6, -0.2),
    "rose gold": (0.6, 0.0),
    "blush": (0.5, 0.0),
    "rose": (0.5, 0.1),
    "berry": (0.4, 0.0),
    "neon yellow": (-0.1, -0.6),
    "camo": (-0.6, -0.2),
    "navy": (-0.2, 0.2),
    "graphite": (-0.3, 0.0),
    "matte black": (-0.2, -0.2),
    "cashmere": (0.2, 0.5),
    "silk": (0.4, 0.3),
}
AUDIENCE_LEANS: dict[str, tuple[float, float]] = {"Women's": (0.9, 0.0), "Men's": (-0.9, 0.0), "Kids'": (0.3, -0.1)}

AGE_BANDS: tuple[str, ...] = ("18-24", "25-34", "35-44", "45-54", "55+")
AGE_BAND_SHARES: tuple[float, ...] = (0.18, 0.30, 0.24, 0.16, 0.12)
GENDERS: tuple[str, ...] = ("f", "m", "u")
GENDER_SHARES: tuple[float, ...] = (0.47, 0.43, 0.10)
PRICE_TIERS: tuple[str, ...] = ("low", "mid", "high")
# P(price tier | age band): the young skew cheap, 35-54 pay most (rows follow AGE_BANDS).
PRICE_TIER_BY_AGE: tuple[tuple[float, float, float], ...] = (
    (0.55, 0.37, 0.08),
    (0.38, 0.47, 0.15),
    (0.27, 0.48, 0.25),
    (0.25, 0.45, 0.30),
    (0.32, 0.45, 0.23),
)

# Brand names are made of these syllables (seeded shuffle of all combinations; never real brands).
BRAND_HEADS: tuple[str, ...] = (
    "Nor",
    "Vel",
    "Kar",
    "Lum",
    "Zen",
    "Bri",
    "Tor",
    "Ari",
    "Sol",
    "Mar",
    "Vex",
    "Ost",
    "Del",
    "Fen",
    "Gra",
    "Hal",
    "Kiv",
    "Lor",
    "Mav",
    "Nex",
    "Ori",
    "Pra",
    "Qui",
    "Rev",
    "Sky",
    "Tal",
    "Ume",
    "Vor",
    "Wil",
    "Xan",
    "Yar",
    "Zed",
)
BRAND_MIDS: tuple[str, ...] = ("a", "o", "i", "ar", "el", "on", "is", "en", "ur", "ia")
BRAND_TAILS: tuple[str, ...] = (
    "ex",
    "ia",
    "on",
    "ora",
    "ix",
    "wood",
    "line",
    "tek",
    "ly",
    "ano",
    "ara",
    "io",
    "um",
    "en",
    "is",
    "co",
    "va",
    "ro",
    "stone",
    "field",
    "max",
    "pro",
    "lab",
    "home",
)
BRAND_TIER_PRICE: tuple[float, ...] = (0.7, 1.0, 1.6)  # budget, mid, premium brands: price multiplier
BRAND_TIER_SHARES: tuple[float, ...] = (0.4, 0.4, 0.2)

# Title parts. Fillers are shared by every leaf, as on real marketplaces (they blur title embeddings).
FILLERS: tuple[str, ...] = (
    "Premium",
    "New",
    "2026",
    "Bestseller",
    "Original",
    "Upgraded",
    "Deluxe",
    "Hot Sale",
    "Free Shipping",
    "Gift Idea",
    "Top Rated",
    "Limited Edition",
    "Value Pack",
    "Official",
    "Genuine",
    "Eco-Friendly",
    "Fast Delivery",
    "High Quality",
    "Best Gift",
    "Durable",
    "Lightweight",
)
CROSS_PHRASES: tuple[str, ...] = ("for {}", "compatible with {}", "matches {}", "ideal with {}", "{} set")
ABBREVIATIONS: dict[str, str] = {
    "stainless steel": "SS",
    "with": "w/",
    "inch": "in",
    "pack": "pk",
    "professional": "pro",
    "large": "lg",
    "medium": "med",
    "small": "sm",
    "black": "blk",
    "and": "&",
    "wireless": "wless",
    "aluminium": "alu",
}
TITLE_TEMPLATES: tuple[str, ...] = (
    "{brand} {style} {color} {material} {noun} {size} {model}",
    "{filler} {brand} {noun} {size} - {color} {material}, {style}",
    "{noun} {brand} {model} {color} {size} {filler}",
    "{brand} {model} {material} {noun}, {color}, {style} {filler}",
    "{brand} {noun} {color} {style} {size}",
)

# Query parts.
QUERY_KINDS: tuple[str, ...] = ("noun", "synonym", "attr_noun", "brand_noun", "brand", "vague", "misspelled")
GIFT_PHRASES: dict[str, tuple[str, ...]] = {
    "f": ("gift for her", "present for mom", "birthday gift for wife", "gift for girlfriend", "gifts for women"),
    "m": ("gift for him", "present for dad", "birthday gift for husband", "gift for boyfriend", "gifts for men"),
    "u": ("gift ideas", "birthday present", "christmas gift", "secret santa", "housewarming gift"),
}


def typo(word: str, op: int, pos: float) -> str:
    """A plausible typing error in ``word``: op 0 swaps two letters, 1 drops one, 2 doubles one."""
    if len(word) < 4:
        return word
    i = 1 + int(pos * (len(word) - 2))  # never the first letter; shoppers get that right
    if op == 0:
        return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]
    if op == 1:
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]


def cap(text: str) -> str:
    """Title-case each word, keeping upper-case inside words ("XL", "128GB", "SS" stay as they are)."""
    return " ".join(w[:1].upper() + w[1:] for w in text.split(" "))

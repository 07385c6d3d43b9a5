"""The query and texts both framework pipelines are tested on (one gardening topic, one
off-topic text per kind, a non-Latin script)."""

QUERY = "how do plants make food?"
TEXTS = [
    "Photosynthesis turns light, water and carbon dioxide into sugar.",
    "The stock market fell on Tuesday.",
    "Chlorophyll absorbs light in the leaves of plants.",
    "光合作用是植物制造食物的方式。",
    "A recipe for banana bread with walnuts.",
    "Roots take up water and minerals from the soil.",
]

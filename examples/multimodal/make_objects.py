"""Regenerate objects.jsonl: small pictures drawn with Pillow (no downloads), with titles.

Run: python examples/multimodal/make_objects.py
"""

from __future__ import annotations

import base64
import io
import json
import uuid
from pathlib import Path

from PIL import Image, ImageDraw

NAMESPACE = uuid.UUID("6f1c1f0e-3b7a-4c55-9d8e-1a2b3c4d5e6f")
COLORS = {"red": (220, 30, 40), "blue": (30, 60, 220), "green": (30, 170, 60), "yellow": (240, 210, 30)}
BACKGROUNDS = {"white": (250, 250, 250), "black": (15, 15, 15)}
SHAPES = ("circle", "square", "triangle")


def draw(shape: str, color: tuple[int, int, int], background: tuple[int, int, int]) -> bytes:
    image = Image.new("RGB", (48, 48), background)
    pen = ImageDraw.Draw(image)
    box = (8, 8, 40, 40)
    if shape == "circle":
        pen.ellipse(box, fill=color)
    elif shape == "square":
        pen.rectangle(box, fill=color)
    else:
        pen.polygon([(24, 6), (42, 42), (6, 42)], fill=color)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def objects() -> list[dict[str, object]]:
    rows = []
    year = 1990
    for shape in SHAPES:
        for color_name, color in COLORS.items():
            for bg_name, bg in BACKGROUNDS.items():
                year += 1
                title = f"{color_name.capitalize()} {shape} on {bg_name}"
                rows.append(
                    {
                        "class": "Artwork",
                        "id": str(uuid.uuid5(NAMESPACE, title)),
                        "properties": {
                            "title": title,
                            "description": f"A plain {color_name} {shape} drawn on a {bg_name} background.",
                            "image": base64.b64encode(draw(shape, color, bg)).decode("ascii"),
                            "year": year,
                            "palette": [color_name, bg_name],
                        },
                        # The 'external' vector is brought by the client: (r, g, b, brightness of background).
                        "vectors": {"external": [c / 255 for c in color] + [sum(bg) / 765]},
                    }
                )
    return rows


if __name__ == "__main__":
    target = Path(__file__).with_name("objects.jsonl")
    target.write_text("".join(json.dumps(o) + "\n" for o in objects()), encoding="utf-8")
    print(f"wrote {target}")

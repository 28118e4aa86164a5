"""Contact sheets: a brood's children side by side in one image, each labelled with its index."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw

from sdxl_breeder.client.values import Brood

GAP = 4  # pixels between and around the pictures


def contact_sheet(images: Sequence[Image.Image], columns: int | None = None, labels: Sequence[str] | None = None) -> Image.Image:
    """The images in a grid (square-ish unless `columns` is given), in order, left to right."""
    if not images:
        raise ValueError("a contact sheet needs at least one image")
    cols = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    w = max(im.width for im in images)
    h = max(im.height for im in images)
    sheet = Image.new("RGB", (cols * (w + GAP) + GAP, rows * (h + GAP) + GAP), "white")
    draw = ImageDraw.Draw(sheet)
    for i, im in enumerate(images):
        x, y = GAP + (i % cols) * (w + GAP), GAP + (i // cols) * (h + GAP)
        sheet.paste(im.convert("RGB"), (x, y))
        if labels is not None:
            text = labels[i]
            box = draw.textbbox((x + 3, y + 2), text)
            draw.rectangle((box[0] - 2, box[1] - 1, box[2] + 2, box[3] + 1), fill="black")
            draw.text((x + 3, y + 2), text, fill="white")
    return sheet


def save_brood(brood: Brood, out: str | Path) -> list[Path]:
    """Write each child as `child-NN.jpg` (the server's JPEG bytes) and `contact-sheet.jpg` in
    the folder `out`; returns the paths written, the sheet last."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for frame in brood.frames:
        path = folder / f"child-{frame.child:02d}.jpg"
        frame.save(path)
        paths.append(path)
    sheet = contact_sheet([f.image for f in brood.frames], labels=[str(f.child) for f in brood.frames])
    sheet_path = folder / "contact-sheet.jpg"
    sheet.save(sheet_path, quality=92)
    return paths + [sheet_path]

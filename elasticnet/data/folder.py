"""The generic reader: ``images/`` + ``masks/`` folders, matched by file stem, any common extension.

Covers Kvasir-SEG, the PNG layout of CVC-ClinicDB, and converted CBIS-DDSM / INbreast sets. An optional
``groups.csv`` (or ``sequences.csv``) beside the folders, with columns ``name/id, group/sequence/patient``,
gives the groups that a grouped split keeps together; a name is an image's file name with or without its
extension, and every image must be listed (one left out would be a group of its own, free to land beside its
near-duplicates in another part of the split). Without a group file every image is its own group.
"""

from __future__ import annotations

import csv
from pathlib import Path, PurePosixPath

from elasticnet.data.imageio import IMAGE_SUFFIXES
from elasticnet.data.records import DataProblems, Record
from elasticnet.errors import UserError

GROUP_FILES = ("groups.csv", "sequences.csv")


def image_files(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]


def files_by_stem(folder: Path, files: list[Path] | None = None) -> dict[str, Path]:
    """stem -> file of ``folder``'s images (``files``: its :func:`image_files`, when already listed)."""
    return {p.stem: p for p in (image_files(folder) if files is None else files)}


def shared_stems(folder: Path, files: list[Path]) -> list[str]:
    """Problems: files of ``folder`` (its :func:`image_files`) that share a name (``1.png`` and ``1.jpg``): which
    one pairs with the other folder's file would be a guess."""
    by_stem: dict[str, list[str]] = {}
    for p in files:
        by_stem.setdefault(p.stem, []).append(p.name)
    return [
        f"{folder}: {' and '.join(names)} share the name {stem!r}; keep one"
        for stem, names in by_stem.items()
        if len(names) > 1
    ]


def natural_key(stem: str) -> tuple:
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def require_dir(root: Path, *subdirs: str, hint: str) -> None:
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise UserError(f"data folder {root} {what}; {hint}")
    missing = [str(root / d) for d in subdirs if not (root / d).is_dir()]
    if missing:
        raise UserError(f"{root} must hold {' and '.join(d + '/' for d in subdirs)}; missing: {', '.join(missing)}")


def pair_by_stem(root: Path, images_dir: Path, masks_dir: Path) -> list[tuple[str, Path, Path]]:
    """(stem, image, mask) for every stem, in natural order; unpaired files and files of one folder that share a
    name raise :class:`DataProblems` listing each of them (its ``records`` are the pairs, for the caller to check
    too)."""
    image_list, mask_list = image_files(images_dir), image_files(masks_dir)  # each folder listed once
    images, masks = files_by_stem(images_dir, image_list), files_by_stem(masks_dir, mask_list)
    problems = shared_stems(images_dir, image_list) + shared_stems(masks_dir, mask_list)
    problems += [f"{images[s]}: no mask {masks_dir}/{s}.*" for s in sorted(images.keys() - masks.keys())]
    problems += [f"{masks[s]}: no image {images_dir}/{s}.*" for s in sorted(masks.keys() - images.keys())]
    if not images:
        problems.append(f"{images_dir}: no images (looked for {', '.join(IMAGE_SUFFIXES)})")
    pairs = [(s, images[s], masks[s]) for s in sorted(images.keys() & masks.keys(), key=natural_key)]
    if problems:
        raise DataProblems(root, problems, pairs)
    return pairs


def paired(root: Path, images_dir: Path, masks_dir: Path) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """(pairs, problems of the listing): :func:`pair_by_stem` that hands its problems back instead of raising."""
    try:
        return pair_by_stem(root, images_dir, masks_dir), []
    except DataProblems as e:
        return e.records, e.problems


def group_key(name: str) -> str:
    """A group file's name as the image stem it names: ``12``, ``12.png`` and ``images/12.png`` all name 12."""
    path = PurePosixPath(name.strip().replace("\\", "/"))
    return path.stem if path.suffix.lower() in IMAGE_SUFFIXES else path.name


def read_groups(root: Path) -> tuple[dict[str, str], Path | None]:
    """(image stem -> group, the group file) from the first group file found beside the folders (({}, None) if
    none). A name given twice with two groups is refused."""
    for name in GROUP_FILES:
        path = root / name
        if path.is_file():
            try:
                with open(path, newline="", encoding="utf-8") as f:
                    rows = list(csv.reader(f))
            except (UnicodeDecodeError, csv.Error) as e:
                raise UserError(
                    f"{path} is not a CSV text file ({type(e).__name__}); it must have a header and two "
                    "columns: name, group"
                ) from None
            if len(rows) < 2 or len(rows[0]) < 2:
                raise UserError(f"{path} must have a header and two columns: name, group")
            groups: dict[str, str] = {}
            for row in rows[1:]:
                if len(row) < 2 or not row[0].strip():
                    continue
                key, group = group_key(row[0]), row[1].strip()
                if groups.setdefault(key, group) != group:
                    raise UserError(f"{path} puts {row[0].strip()!r} in two groups ({groups[key]!r}, {group!r})")
            return groups, path
    return {}, None


def ungrouped(pairs: list[tuple[str, Path, Path]], groups: dict[str, str], group_file: Path | None) -> list[str]:
    """Problems: images the group file does not list (a grouped split would make each its own group, and
    near-duplicates could land in training and test)."""
    if group_file is None:
        return []
    missing = [image for stem, image, _ in pairs if stem not in groups]
    if missing and len(missing) == len(pairs):
        example = next(iter(groups), "")
        return [
            f"{group_file}: names none of the {len(pairs)} images (it names e.g. {example!r}; a name is an image's "
            f"file name, with or without its extension, e.g. {pairs[0][0]!r} for {pairs[0][1].name})"
        ]
    return [f"{image}: not listed in {group_file.name}" for image in missing]


def find_samples(root: str | Path, grouped: bool = True) -> list[Record]:
    """The folder's image/mask pairs with their groups. ``grouped``: a grouped split will be built, so a group
    file must list every image; otherwise (a random split, a whole folder evaluated) images it leaves out are
    their own groups and nothing is refused for them."""
    root = Path(root)
    require_dir(root, "images", "masks", hint="pass --data synthetic or a folder with images/ and masks/")
    groups, group_file = read_groups(root)
    pairs, problems = paired(root, root / "images", root / "masks")
    if grouped:
        problems += ungrouped(pairs, groups, group_file)
    records = [Record(stem, image, groups.get(stem, stem), mask_path=mask) for stem, image, mask in pairs]
    if problems:
        raise DataProblems(root, problems, records)
    return records

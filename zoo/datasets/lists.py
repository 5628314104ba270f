"""File lists for the generic ``Dataset``: pair images with labels by name and split them.

A list line is ``<image> <label>`` relative to the dataset root (PaddleSeg's format; an
image-only line is an image to predict). ``create_dataset_list`` pairs every image under
``image_dir`` with the label under ``label_dir`` that has the same relative path and stem
(``<stem><image_suffix>`` <-> ``<stem><label_suffix>``), shuffles the pairs with a seed and cuts
them into train / val / test by ratio.
"""
import os
import random

from ..utils.errors import DataError

LIST_NAMES = ('train.txt', 'val.txt', 'test.txt')


def _files_with_suffix(folder, suffixes):
    """``{relative stem: relative path}`` of files under ``folder`` ending with one of ``suffixes``."""
    out = {}
    for dirpath, dirnames, files in os.walk(folder):
        dirnames.sort()
        for f in sorted(files):
            low = f.lower()
            for suf in suffixes:
                if low.endswith(suf.lower()) and len(f) > len(suf):
                    rel = os.path.relpath(os.path.join(dirpath, f), folder)
                    stem = rel[:len(rel) - len(suf)]
                    if stem in out:
                        raise DataError(f'{os.path.join(folder, rel)!r} and {os.path.join(folder, out[stem])!r} '
                                        'have the same name stem; keep one image format per name')
                    out[stem] = rel
                    break
    return out


def pair_files(dataset_root, image_dir='images', label_dir='labels', image_suffixes=('.jpg', '.jpeg', '.png'),
               label_suffix='.png'):
    """``(pairs, unlabeled, orphan_labels)``: ``[(image, label)]`` relative to the root, images without a
    label, and labels without an image (sorted)."""
    img_root = os.path.join(dataset_root, image_dir)
    lab_root = os.path.join(dataset_root, label_dir)
    for d, what in ((img_root, 'image'), (lab_root, 'label')):
        if not os.path.isdir(d):
            raise DataError(f'{what} folder {d!r} does not exist (expected <dataset_root>/{image_dir} and '
                            f'<dataset_root>/{label_dir}; see docs/custom_dataset.md)')
    images = _files_with_suffix(img_root, image_suffixes)
    labels = _files_with_suffix(lab_root, (label_suffix,))
    if not images:
        raise DataError(f'no images ending with {", ".join(image_suffixes)} under {img_root!r}')
    rel = lambda base, p: os.path.relpath(os.path.join(base, p), dataset_root).replace(os.sep, '/')  # noqa: E731
    pairs = [(rel(img_root, images[s]), rel(lab_root, labels[s])) for s in sorted(images) if s in labels]
    unlabeled = [rel(img_root, images[s]) for s in sorted(images) if s not in labels]
    orphans = [rel(lab_root, labels[s]) for s in sorted(labels) if s not in images]
    return pairs, unlabeled, orphans


def split_counts(n, ratios):
    """How many of ``n`` items go to each split: rounded shares that sum to ``n``; a split with a
    positive ratio gets at least one item when there are enough."""
    if len(ratios) not in (2, 3) or any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise DataError(f'--split expects 2 or 3 non-negative ratios (train val [test]), got {list(ratios)}')
    total = float(sum(ratios))
    counts = [int(n * r / total) for r in ratios]
    rest = n - sum(counts)
    order = sorted(range(len(ratios)), key=lambda i: -(n * ratios[i] / total - counts[i]))
    for i in order[:rest]:
        counts[i] += 1
    for i, r in enumerate(ratios):  # a requested split never ends up empty when items allow
        if r > 0 and counts[i] == 0 and n >= len([x for x in ratios if x > 0]):
            j = max(range(len(counts)), key=lambda k: counts[k])
            counts[j] -= 1
            counts[i] += 1
    return counts


def write_list(path, rows, separator=' '):
    with open(path, 'w', encoding='utf-8') as f:
        for row in rows:
            f.write(separator.join(row) + '\n')


def create_dataset_list(dataset_root, image_dir='images', label_dir='labels', split=(0.8, 0.2),
                        seed=0, image_suffixes=('.jpg', '.jpeg', '.png'), label_suffix='.png', separator=' ',
                        class_names=None):
    """Write ``train.txt``, ``val.txt`` (``test.txt`` with a third ratio; a list whose ratio is 0 is not
    written), ``unlabeled.txt`` (images without a label, if any) and ``labels.txt`` (with
    ``class_names``) into ``dataset_root``.
    Returns ``{list file: number of lines}`` and the label files that have no image."""
    pairs, unlabeled, orphans = pair_files(dataset_root, image_dir, label_dir, image_suffixes, label_suffix)
    if not pairs:
        raise DataError(f'no image under {os.path.join(dataset_root, image_dir)!r} has a label '
                        f'<same name>{label_suffix} under {os.path.join(dataset_root, label_dir)!r}')
    if separator.strip() == '' and any(' ' in p for pair in pairs for p in pair):
        bad = next(p for pair in pairs for p in pair if ' ' in p)
        raise DataError(f'{bad!r} has a space in its name; rename it or pass another --separator')
    counts = split_counts(len(pairs), list(split))
    order = list(pairs)
    random.Random(seed).shuffle(order)
    written, start = {}, 0
    for name, n, ratio in zip(LIST_NAMES, counts, split):
        rows = sorted(order[start:start + n])
        start += n
        if ratio > 0:  # a split of ratio 0 is left alone: --split 0 1 writes only val.txt
            write_list(os.path.join(dataset_root, name), rows, separator)
            written[name] = n
    if unlabeled:
        write_list(os.path.join(dataset_root, 'unlabeled.txt'), [(p,) for p in unlabeled], separator)
        written['unlabeled.txt'] = len(unlabeled)
    if class_names:
        write_list(os.path.join(dataset_root, 'labels.txt'), [(n,) for n in class_names])
        written['labels.txt'] = len(class_names)
    return written, orphans

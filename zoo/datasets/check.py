"""What ``tools/data/check_dataset.py`` reports, from the records of the one dataset scanner
(``zoo/datasets/scan.py``): counts, image sizes, the pixels and images of every class after the
dataset's label mapping, every problem the pre-flight check would stop on, and suggestions for
``num_classes``, ``ignore_index`` and class weights.

Class weights are median frequency balancing (Eigen & Fergus, ICCV 2015, section 4.3):
``freq(c)`` = pixels of class ``c`` / pixels of the images where ``c`` appears (ignored pixels left
out), ``weight(c) = median(freq) / freq(c)``; a class that never appears gets weight 0.
"""
import os
from collections import Counter

import numpy as np

from .scan import base_dataset, dataset_problems, label_format_problem, label_lut, sample_problems

TOP_SIZES = 3


def dataset_stats(dataset, records, check_range=True):
    """Statistics of one dataset from the scan ``records`` (see module doc). With
    ``check_range=False`` (the class count is unknown) values are only counted, not judged."""
    ds = base_dataset(dataset)
    lut = label_lut(ds)
    n = ds.num_classes
    sizes, stored = Counter(), Counter()
    pixels = np.zeros(256, np.int64)        # per train id (after mapping)
    images = np.zeros(256, np.int64)        # images containing the id
    image_pixels = np.zeros(256, np.int64)  # labelled pixels of those images
    ignored = labelled = n_labels = 0
    for img, lab in ds.file_list:
        rec = records[(os.path.abspath(img), 'image')]
        if not rec['error']:
            sizes[(rec['width'], rec['height'])] += 1
        if lab is None:
            continue
        n_labels += 1
        rec = records[(os.path.abspath(lab), 'label')]
        if rec['error'] or label_format_problem(rec):
            continue
        values = np.asarray(rec['values'], np.int64)
        counts = np.asarray(rec['counts'], np.int64)
        for v, c in zip(values.tolist(), counts.tolist()):
            stored[v] += c
        mapped = lut[values]
        keep = (mapped >= 0) & (mapped != ds.ignore_index) & (mapped < 256)
        ignored += int(counts[mapped == ds.ignore_index].sum())
        per_id = np.bincount(mapped[keep], weights=counts[keep], minlength=256).astype(np.int64)
        total = int(per_id.sum())
        labelled += total
        present = per_id > 0
        pixels += per_id
        images += present
        image_pixels[present] += total
    seen = np.flatnonzero(pixels)
    if check_range:
        problems = dataset_problems(ds, records)
    else:
        problems = [p for img, lab in ds.file_list for p in sample_problems(img, lab, records)]
    return {
        'samples': len(ds.file_list), 'labels': n_labels, 'sizes': sizes.most_common(),
        'num_classes': n, 'class_names': list(getattr(ds, 'class_names', [])), 'ignore_index': ds.ignore_index,
        'pixels': pixels, 'images': images, 'image_pixels': image_pixels, 'ignored': ignored,
        'labelled': labelled, 'stored_values': dict(sorted(stored.items())), 'problems': problems,
        'max_id': int(seen.max()) if seen.size else None,
    }


def median_frequency_weights(pixels, image_pixels):
    """Eigen & Fergus' median frequency balancing (see module doc); absent classes weigh 0."""
    pixels = np.asarray(pixels, np.float64)
    image_pixels = np.asarray(image_pixels, np.float64)
    present = pixels > 0
    if not present.any():
        return np.zeros_like(pixels)
    freq = np.zeros_like(pixels)
    freq[present] = pixels[present] / image_pixels[present]
    med = np.median(freq[present])
    out = np.zeros_like(pixels)
    out[present] = med / freq[present]
    return out


def suggestions(train_stats, num_classes_given):
    """``{'num_classes', 'ignore_index', 'class_weights'}`` from the training split's statistics."""
    max_id = train_stats['max_id']
    n = num_classes_given or (max_id + 1 if max_id is not None else None)
    out = {'num_classes': n, 'ignore_index': train_stats['ignore_index']}
    if n:
        w = median_frequency_weights(train_stats['pixels'][:n], train_stats['image_pixels'][:n])
        out['class_weights'] = [round(float(x), 4) for x in w]
    return out


def format_table(stats, names=None, known=True):
    """The per-class table (one row per class id up to the highest id seen or num_classes).
    ``known=False``: the dataset's class count is a placeholder (check_dataset.py without
    --num_classes or labels.txt): rows up to the highest id seen only."""
    seen = -1 if stats['max_id'] is None else stats['max_id']
    n = max(stats['num_classes'] if known else 0, seen + 1)
    names = list(names or stats['class_names'])
    total = max(stats['labelled'], 1)
    rows = [f'{"id":>4}  {"class":<20}{"pixels":>14}{"% of labelled":>15}{"images":>8}']
    for c in range(n):
        name = names[c] if c < len(names) else str(c)
        flag = '' if c < stats['num_classes'] or not known else '  <- beyond num_classes'
        rows.append(f'{c:>4}  {name[:19]:<20}{int(stats["pixels"][c]):>14,}{100.0 * stats["pixels"][c] / total:>14.2f}%'
                    f'{int(stats["images"][c]):>8}{flag}')
    rows.append(f'{"":>4}  {"(ignored)":<20}{stats["ignored"]:>14,}')
    return '\n'.join(rows)


def format_report(name, stats, names=None, known=True):
    """The report of one split: counts, sizes, the class table and every problem."""
    sizes = ', '.join(f'{w}x{h} ({k})' for (w, h), k in stats['sizes'][:TOP_SIZES])
    more = f' and {len(stats["sizes"]) - TOP_SIZES} other sizes' if len(stats['sizes']) > TOP_SIZES else ''
    lines = [f'== {name}: {stats["samples"]} images, {stats["labels"]} labels; sizes (W x H): {sizes or "-"}{more}',
             format_table(stats, names, known)]
    stored = stats['stored_values']
    if stored:
        lines.append('stored label values: ' + ', '.join(map(str, list(stored)[:40])) + (' ...' if len(stored) > 40 else ''))
    lines += [f'problem: {p}' for p in stats['problems']]
    return '\n'.join(lines)

"""The README's generated sections: each binary rewrites the text between two markers.

Tables of results are never typed by hand: a binary writes them from its JSON
file, between ``<!-- name:start -->`` and ``<!-- name:end -->``.
"""

import os

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def replace_between(start, end, lines, readme=README):
    """Rewrites ``readme`` between the marker comments ``start`` and ``end``."""
    with open(readme) as f:
        text = f.read()
    if start not in text or end not in text:
        raise ValueError(f"{readme} lacks the {start} / {end} markers.")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    with open(readme, "w") as f:
        f.write(head + start + "\n" + "\n".join(lines) + "\n" + end + tail)

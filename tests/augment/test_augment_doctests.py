"""The examples in the augment docstrings run, so they cannot drift."""

import doctest

import pytest

from keras_ssl.augment import erasing
from keras_ssl.augment import recipes
from keras_ssl.augment import views


@pytest.mark.parametrize("module", [erasing, views, recipes])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0

import pytest

from fourdcontrast.sources.classes import (
    CLASS_NAMES,
    OBJECT_CATEGORIES,
    class_id,
    class_of_category,
    class_of_nyu40,
    class_of_raw_category,
)


def test_class_set_and_mappings():
    assert len(CLASS_NAMES) == len(set(CLASS_NAMES)) == 12 and CLASS_NAMES[-1] == "other"
    assert len(OBJECT_CATEGORIES) == 8
    assert class_of_category("dresser") == class_id("cabinet")
    assert class_of_category("bathtub") == class_of_category("lamp") == class_id("other")
    assert class_of_raw_category("  Office Chair ") == class_id("chair")
    assert class_of_raw_category("couch") == class_id("sofa")
    assert class_of_raw_category("whiteboard") == class_id("other")
    assert class_of_nyu40(0) == -1
    assert [class_of_nyu40(i) for i in (1, 2, 5, 14, 17, 25, 32, 33)] == [
        class_id(c) for c in ("wall", "floor", "chair", "desk", "cabinet", "monitor", "nightstand", "toilet")]
    assert class_of_nyu40(38) == class_id("other")
    with pytest.raises(KeyError, match="unknown class 'ceiling'"):
        class_id("ceiling")

"""featflow.utils.visualize: drawing detections."""


import numpy as np


def test_draw_boxes_marks_confident_detections_only():
    from featflow.utils.visualize import draw_boxes

    image = np.zeros((60, 80, 3), np.uint8)
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8)
    out = draw_boxes(image, np.array([[10, 20, 40, 50], [50, 5, 70, 25]]), np.array([1, 2]), np.array([0.9, 0.1]),
                     ["a", "b"], palette)
    assert (out[50, 25] == [255, 0, 0]).all()  # the bottom edge of the confident box
    assert not out[15:26, 50:71].any()  # the 0.1 box is not drawn
    assert not image.any()  # the input is left alone

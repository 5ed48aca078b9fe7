"""keras-hub's DeepLabV3+ (`DeepLabV3ImageSegmenter`), built as the keras-hub comparison and the tests use it:
a model made elsewhere, with an ImageNet-normalising image converter, random weights.

keras-hub is a dev extra (`pip install keras-hub`), so the module is passed in rather than imported here.
"""

from __future__ import annotations

# keras-hub's image converter computes pixel * scale + offset; these are ImageNet's mean/std on 0..255 pixels.
IMAGENET_SCALE = [1 / (0.229 * 255), 1 / (0.224 * 255), 1 / (0.225 * 255)]
IMAGENET_OFFSET = [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225]


def hub_segmenter(keras_hub, size: int, classes: int, *, resnet50: bool = False):
    """keras-hub's DeepLabV3ImageSegmenter at `size` x `size` with an ImageNet-normalising image converter:
    ResNet50 (bottleneck blocks 3-4-6-3, ASPP on P5, rates 6/12/18) or a tiny basic-block ResNet.
    `keras_hub`: the imported keras_hub module."""
    if resnet50:
        enc = keras_hub.models.ResNetBackbone(
            input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 128, 256, 512],
            stackwise_num_blocks=[3, 4, 6, 3], stackwise_num_strides=[1, 2, 2, 2], block_type="bottleneck_block")
        backbone = keras_hub.models.DeepLabV3Backbone(image_encoder=enc, low_level_feature_key="P2",
                                                      spatial_pyramid_pooling_key="P5", upsampling_size=8,
                                                      dilation_rates=[6, 12, 18])
    else:
        enc = keras_hub.models.ResNetBackbone(
            input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 32, 32],
            stackwise_num_blocks=[1, 1, 1], stackwise_num_strides=[1, 2, 2], block_type="basic_block")
        backbone = keras_hub.models.DeepLabV3Backbone(image_encoder=enc, low_level_feature_key="P2",
                                                      spatial_pyramid_pooling_key="P4", upsampling_size=4,
                                                      dilation_rates=[2, 4], projection_filters=16)
    converter = keras_hub.layers.DeepLabV3ImageConverter(image_size=(size, size), scale=IMAGENET_SCALE,
                                                         offset=IMAGENET_OFFSET)
    pre = keras_hub.models.DeepLabV3ImageSegmenterPreprocessor(image_converter=converter)
    return keras_hub.models.DeepLabV3ImageSegmenter(backbone=backbone, num_classes=classes, preprocessor=pre)

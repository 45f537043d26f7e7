"""The labeling page's old import path: it lives in :mod:`aift_tf.annotation.gallery` (re-exported here)."""

from aift_tf.annotation.gallery import (MIN_TILE, PATCHES, PLANE_NAMES, montage, montage_boxes,  # noqa: F401
                                        montage_planes, page_token, render_html, store_planes, write_gallery,
                                        write_montage, write_page, write_patches)

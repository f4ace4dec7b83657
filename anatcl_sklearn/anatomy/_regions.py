"""The Desikan-Killiany atlas regions and the anatomical measures AnatCL uses.

The order is FreeSurfer's ``aparc.stats`` order, left hemisphere first, which is also the
column order of OpenBHB's ``desikan_roi_features.csv``. Every ``anatomy`` array in this
package has shape ``(n_subjects, 68, 3)`` with regions in this order and measures in
:data:`ANATOMY_MEASURES` order.
"""

#: The 34 cortical regions of one hemisphere, in FreeSurfer order.
DESIKAN_HEMISPHERE_REGIONS = (
    "bankssts",
    "caudalanteriorcingulate",
    "caudalmiddlefrontal",
    "cuneus",
    "entorhinal",
    "fusiform",
    "inferiorparietal",
    "inferiortemporal",
    "isthmuscingulate",
    "lateraloccipital",
    "lateralorbitofrontal",
    "lingual",
    "medialorbitofrontal",
    "middletemporal",
    "parahippocampal",
    "paracentral",
    "parsopercularis",
    "parsorbitalis",
    "parstriangularis",
    "pericalcarine",
    "postcentral",
    "posteriorcingulate",
    "precentral",
    "precuneus",
    "rostralanteriorcingulate",
    "rostralmiddlefrontal",
    "superiorfrontal",
    "superiorparietal",
    "superiortemporal",
    "supramarginal",
    "frontalpole",
    "temporalpole",
    "transversetemporal",
    "insula",
)

#: The 68 regions: ``lh-bankssts`` to ``lh-insula``, then ``rh-bankssts`` to ``rh-insula``.
DESIKAN_REGIONS = tuple(
    f"{hemi}-{region}" for hemi in ("lh", "rh") for region in DESIKAN_HEMISPHERE_REGIONS
)

#: Cortical thickness (mm), grey-matter volume (mm^3), surface area (mm^2).
ANATOMY_MEASURES = ("CT", "GMV", "SA")

#: Number of Desikan-Killiany regions: 68 (34 per hemisphere).
N_REGIONS = len(DESIKAN_REGIONS)
#: Number of anatomical measures per region: 3 (CT, GMV, SA).
N_MEASURES = len(ANATOMY_MEASURES)

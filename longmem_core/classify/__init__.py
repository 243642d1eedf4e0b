"""Few-shot classification with demonstrations in memory (icl), the other modes over the same demonstrations
(icl_modes), and the choice between them on held-out demonstrations (icl_select)."""

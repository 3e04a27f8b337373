"""The demo: the whole study end to end on one machine (`maco-study demo`), and the HTTP driver of
synthetic participants (`maco-study simulate`). It may import every package; its driver never imports torch."""

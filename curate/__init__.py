"""Curate a scraped folder of photos: scan, repair, detect, dedupe, score, review, filter, report."""

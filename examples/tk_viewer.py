"""Embed progressive images in a Tk app: two streams side by side, each refining in place.

    python examples/tk_viewer.py http://127.0.0.1:8000/files/a.pcs photo.pcs
"""
import sys
import tkinter as tk

from progcodec.viewer import ProgressiveImage

root = tk.Tk()
root.title("progcodec in a Tk app")
for source in sys.argv[1:] or ["photo.pcs"]:
    # Network and decoding run in a worker thread; the widget polls it from Tk's event loop,
    # so a slow or stalled link never freezes the window.
    widget = ProgressiveImage(root, source, throttle="128kbit" if "://" not in source else None,
                              on_status=lambda p, s=source: print(f"{s}: {p.text}"))
    widget.pack(side="left", anchor="n", padx=4, pady=4)
tk.Button(root, text="Quit", command=root.destroy).pack(side="bottom")
root.mainloop()

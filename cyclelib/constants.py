"""Numbers and names every stage agrees on (DESIGN §3-4): classes, rate, cycle length, maps."""

CLASS_NAMES: tuple[str, ...] = ("normal", "crackle", "wheeze", "both")  # label = crackle + 2*wheeze
SAMPLE_RATE: int = 22_000  # the original's rate: every recording is resampled to it
CYCLE_SECONDS: float = 8.0  # fixed cycle length: long cycles keep their tail, short ones tile
CYCLE_SAMPLES: int = int(SAMPLE_RATE * CYCLE_SECONDS)  # 176,000 samples per cycle
MAP_NAMES: tuple[str, ...] = ("constant-Q (CQT)", "gammatone", "mel")  # hybrid spectrogram channels

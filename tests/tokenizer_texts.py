"""Texts for the tokenizer's tests and benchmark, made here so nothing is downloaded.

`multilingual_text` strings sentences of real words from ten languages in eight scripts, with digits of two
scripts, punctuation, emoji and contractions, word frequencies falling off as in natural text (Zipf), so
pieces repeat as they do in real text.
"""
import random

WORDS = {
    "en": "the of and to in is you that it he was for on are as with his they I at be this have from or one had "
          "by word but not what all were we when your can said there use an each which she do how their if will "
          "don't it's we'll they're I'd you've shouldn't".split(),
    "fr": "le de un être et à il avoir ne je son que se qui ce dans en du elle au pour pas que vous par sur faire "
          "plus dire me on mon lui nous comme mais pouvoir avec tout y aller voir été déjà très où l'homme "
          "c'est qu'il".split(),
    "de": "der die und in den von zu das mit sich des auf für ist im dem nicht ein eine als auch es an werden aus "
          "er hat daß sie nach wird bei einer um am sind noch wie einem über einen so zum war haben nur oder "
          "Größe Straße Mädchen über".split(),
    "es": "de la que el en y a los se del las un por con no una su para es al lo como más pero sus le ya o este "
          "sí porque esta entre cuando muy sin sobre también me hasta hay donde quien desde niño año".split(),
    "ru": "и в не на я быть он с что а по это она этот к но они мы как из у который то за свой что весь год от "
          "так о для ты же все тот мочь вы человек такой его сказать только или ещё".split(),
    "el": "και το να η ο την της του με που για τα δεν στο σε θα από τον οι είναι στην ένα μου τι τους".split(),
    "ar": "في من على إلى أن التي عن هذا الذي مع كان هذه لا ما بين كل قد ذلك بعد هو أو عند".split(),
    "hi": "के है में की और से को का एक पर यह भी हैं था कि लिए नहीं तो हो गया कर".split(),
    "zh": "的 一 是 不 了 在 人 有 我 他 这 个 们 中 来 上 大 为 和 国 地 到 以 说 时 要 就 出 会 可 也 你 对 生 能 而 子 那 得 于 着 下 自 之 年 过 发 后 作 里".split(),
    "ja": "の に は を た が で て と し れ さ ある いる も する から な こと として い や れる など なっ ない この ため その あっ よう また もの という あり まで られ なる へ か だ これ によって により おり より による ず なり られる において ば なかっ なく しかし について せ だっ その後 できる それ う ので なお のみ でき き つ における および いう さらに でも ら たり その他 に関する たち ます ん なら 日本語 東京 カタカナ".split(),
}
EXTRAS = ["😀", "👍🏽", "🇺🇸", "—", "«", "»", "¿", "¡", "…", "1234", "٣٤٥", "42", "3.14", "2026", "e\u0301", "naïve"]


def multilingual_text(n_chars: int = 200_000, seed: int = 0) -> str:
    """About n_chars characters of sentences in the languages of WORDS, each sentence in one language."""
    rng = random.Random(seed)
    languages = sorted(WORDS)
    weights = {name: [1 / (rank + 1) for rank in range(len(words))] for name, words in WORDS.items()}
    sentences, total = [], 0
    while total < n_chars:
        name = rng.choice(languages)
        words = rng.choices(WORDS[name], weights[name], k=rng.randint(4, 14))
        words += rng.sample(EXTRAS, k=rng.randint(0, 2))
        rng.shuffle(words)
        joiner = "" if name in ("zh", "ja") and rng.random() < 0.7 else " "
        sentence = joiner.join(words) + rng.choice([".", "!", "?", "。", ",", ";"]) + rng.choice([" ", " ", "\n", "\n\n"])
        sentences.append(sentence)
        total += len(sentence)
    return "".join(sentences)

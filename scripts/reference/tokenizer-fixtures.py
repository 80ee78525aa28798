"""Makes test/fixtures/tokenizer/cases.json with Hugging Face transformers' CLIPTokenizer source.

Run with Debian's python (it has the `regex` module), after writing the tiny vocab:
  npx tsx scripts/reference/write-tiny-tokenizer.ts /tmp/htok-vocab
  /usr/bin/python3 scripts/reference/tokenizer-fixtures.py /work/ref/transformers-files /tmp/htok-vocab

The first argument is a folder holding a `transformers` package: tokenization_clip.py as read from
huggingface/transformers plus stubs for what it imports (see test/fixtures/tokenizer/README.md);
nothing of it is in this repository. This script holds no transformers code.

Per prompt it records:
  expected   - what the engine must produce: basic_clean's HTML step (html.unescape twice, ftfy absent)
               then CLIPTokenizer on its no-ftfy path (BasicTokenizer): tokens, ids, input_ids
               (77: BOS, ids, EOS, EOS padding) or, past 75 ids, only the count.
  hfNoFtfy   - CLIPTokenizer as installed without ftfy, on the raw prompt (no unescaping).
  ftfyPath   - openai CLIP's pipeline with ftfy.fix_text as the identity: CLIPTokenizer's ftfy path
               (whitespace_clean(fix_text(text)).lower()) on html.unescape(html.unescape(text)).strip().
The last two are for information (the README counts where they differ from `expected`).
"""
import hashlib
import html
import json
import os
import sys
import types

ref, vocab_dir = sys.argv[1], sys.argv[2]
out = sys.argv[3] if len(sys.argv) > 3 else "test/fixtures/tokenizer/cases.json"
sys.path.insert(0, ref)
from transformers.models.clip import tokenization_clip  # noqa: E402

vocab_file = os.path.join(vocab_dir, "vocab.json")
merges_file = os.path.join(vocab_dir, "merges.txt")

sys.modules["ftfy"] = None  # import ftfy -> ImportError: the BasicTokenizer path
no_ftfy = tokenization_clip.CLIPTokenizer(vocab_file, merges_file)
assert no_ftfy.fix_text is None
stub = types.ModuleType("ftfy")
stub.fix_text = lambda text: text
sys.modules["ftfy"] = stub
ftfy_identity = tokenization_clip.CLIPTokenizer(vocab_file, merges_file)
assert ftfy_identity.fix_text is not None


def html_step(text):
    # openai CLIP's basic_clean with ftfy.fix_text left out
    return html.unescape(html.unescape(text)).strip()


def record(tok, text):
    tokens = tok.tokenize(text)
    ids = tok.convert_tokens_to_ids(tokens)
    rec = {"tokens": tokens, "ids": ids}
    if len(ids) <= 75:
        rec["inputIds"] = ([tok.bos_token_id] + ids + [tok.eos_token_id] + [tok.pad_token_id] * 75)[:77]
    return rec


PROMPTS = [
    # HTML entities: named, legacy without ';', numeric, nested, invalid
    "cat &amp; dog",
    "&lt;b&gt;bold&lt;/b&gt; &quot;quoted&quot; &apos;single&apos;",
    "caf&eacute; cr&egrave;me br&ucirc;l&eacute;e &Ntilde;and&uacute;",
    "&amp;amp; &amp;amp;amp; &amp;lt;tag&amp;gt;",
    "&copy 2024 &reg &not a &notit; &notin; &ampx &amp",
    "&hellip;&mdash;&ndash;&lsquo;hi&rsquo; &ldquo;yo&rdquo;",
    "&#39;quoted&#39; &#x27;hex&#x27; &#X41;&#65 &#0; &#128; &#x80; &#150;",
    "&#xD800; &#x110000; &#99999999999999999999; &#x1F600; &#xFFFF; &#1; &#13;",
    "&alpha;&beta;&gamma; &Omega; &infin; &sum;&int; &rarr;&larr; &hearts;",
    "&nbsp;&nbsp;spaced&ensp;out&emsp;&thinsp;text&zwnj;&zwj;",
    "&unknownentity; & alone &; &#; &#x; a&b c &AMP;",
    "&fjlig; &NotEqualTilde; &acE; &bne; &nvlt; &ThickSpace;",
    "&amp;#39; &amp;eacute; &amp;amp;lt;",
    "&lt;|endoftext|&gt; after",
    # unicode
    "café naïve façade résumé Ångström",
    "cafe\u0301 n\u0303 a\u0300\u0301\u0302 combining",
    "日本語のテキスト 中文字符 한국어 텍스트",
    "mixed日本text中文and한국",
    "emoji 😀🎨🖼️ 👩‍🎨 flags 🇯🇵 skin 👍🏽",
    "zero\u200bwidth\u200cjoin\u200dhere\ufeffbom",
    "rtl עברית ערבית العربية \u200fmark\u200e",
    "Ελληνικά Русский текст ÄÖÜ ß ẞ",
    "ﬁ ligature ﬂ ｆｕｌｌｗｉｄｔｈ",
    "control\x00nul\x07bell\x1bescape\x7fdel\x85nel\ufffdrepl",
    "math 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟏𝟐𝟑 ①②③",
    # whitespace of every kind
    "  leading and trailing  ",
    "tabs\tand\nnewlines\r\nand\x0bvt\x0cff",
    "nbsp\u00a0en\u2002em\u2003thin\u2009hair\u200aideo\u3000nnbsp\u202fmmsp\u205f",
    "line\u2028sep\u2029para\x1cfs\x1dgs\x1ers\x1fus",
    "",
    "   \t\n  ",
    "\u00a0\u3000",
    # contractions
    "it's don't they're we've i'm you'll he'd",
    "IT'S DON'T THEY'RE WE'VE I'M YOU'LL HE'D",
    "It'S dOn'T o'clock rock'n'roll 'tis ''s",
    "it\u2019s don\u2019t curly apostrophes",
    # numbers, punctuation
    "1234567890 3.14159 1,000,000 -42 +7 1e10 0x1F",
    "v1.5 sd15 512x512 8k 4K uhd 2d3d",
    "!!! ??? ... --- ,,, ;;; ::: ((( ))) [[[ ]]] {{{ }}}",
    "masterpiece, (best quality:1.2), [worst:0.5], <lora:x:0.8>",
    "a!b@c#d$e%f^g&h*i(j)k_l+m=n",
    "~`|\\/<>\"'",
    # long and odd words
    "supercalifragilisticexpialidocious pneumonoultramicroscopicsilicovolcanoconiosis",
    "a" * 60,
    "thethethethe inininin anananan erererer",
    "photographer photography photographic photos",
    "hellohello catcatcat dogdog",
    # trigger-like words
    "<sks> sks_dog style_1 my-style2 embedding_v3 tok123abc",
    "__underscore__ snake_case_word CamelCaseWord",
    "<|startoftext|>prompt<|endoftext|>",
    "a <|endoftext|> in the middle <|startoftext|> too",
    "<|ENDOFTEXT|> upper <|EndOfText|>",
    "<|endoftext|><|endoftext|>",
    "<|endoftext |> <| endoftext|> <|endoftext|",
    # ordinary prompts
    "a photo of an astronaut riding a horse on mars",
    "A beautiful painting of a singular lighthouse, shining its light across a tumultuous sea of blood by greg rutkowski and thomas kinkade, Trending on artstation.",
    "ugly, blurry, low quality, deformed hands, extra fingers, watermark, text",
    # 77-token overflow and the edge
    "a " * 75,
    "a " * 76,
    "cat " * 80,
    "word, " * 37 + "end",
    "the " * 74 + "!!",
]

vocab_bytes = open(vocab_file, "rb").read()
merges_bytes = open(merges_file, "rb").read()
cases = []
for prompt in PROMPTS:
    cases.append(
        {
            "prompt": prompt,
            "expected": record(no_ftfy, html_step(prompt)),
            "hfNoFtfy": record(no_ftfy, prompt)["tokens"],
            "ftfyPath": record(ftfy_identity, html_step(prompt))["tokens"],
        }
    )
fixture = {
    "vocab": "scripts/tiny-models/tokenizer.ts buildTinyTokenizer()",
    "vocabSha256": hashlib.sha256(vocab_bytes).hexdigest(),
    "mergesSha256": hashlib.sha256(merges_bytes).hexdigest(),
    "python": sys.version.split()[0],
    "cases": cases,
}
os.makedirs(os.path.dirname(out), exist_ok=True)
with open(out, "w", encoding="utf-8") as f:
    json.dump(fixture, f, ensure_ascii=True, indent=1)
    f.write("\n")
print(out, len(cases), "cases")
print("hfNoFtfy differs:", sum(c["hfNoFtfy"] != c["expected"]["tokens"] for c in cases))
print("ftfyPath differs:", sum(c["ftfyPath"] != c["expected"]["tokens"] for c in cases))

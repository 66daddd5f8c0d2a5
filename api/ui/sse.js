// Server-Sent Events over fetch(): EventSource cannot send the Authorization header, and the key
// must never go into a URL. Parses the text/event-stream format (id, event, data; comments are
// the server's keep-alives).

export async function* sseEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = parseBlock(block);
      if (event) yield event;
    }
  }
}

function parseBlock(block) {
  let id = null, type = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "id") id = value;
    else if (field === "event") type = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return null;
  const text = data.join("\n");
  // OpenAI's streams end with a plain `data: [DONE]`.
  return { id, type, data: text === "[DONE]" ? text : JSON.parse(text) };
}

// Follows a stream until it ends or `signal` aborts; reconnects after a dropped connection with
// Last-Event-ID, so nothing is missed or repeated. Resolves when the server closes the stream.
export async function follow(path, { key, lastEventId = null, signal, onEvent, onError }) {
  for (let attempt = 0; !signal.aborted; attempt++) {
    try {
      const headers = { Authorization: `Bearer ${key()}`, Accept: "text/event-stream" };
      if (lastEventId !== null) headers["Last-Event-ID"] = String(lastEventId);
      const response = await fetch(path, { headers, signal, cache: "no-store" });
      if (!response.ok) throw new Error(`stream answered ${response.status}`);
      for await (const event of sseEvents(response)) {
        if (event.id !== null) lastEventId = event.id;
        onEvent(event);
      }
      return;
    } catch (error) {
      if (signal.aborted) return;
      if (onError) onError(error);
      await new Promise((resolve) => setTimeout(resolve, Math.min(1000 * 2 ** attempt, 10000)));
    }
  }
}

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { css, editorWorkerService, favicon, graphqlWorker, js, jsonWorker } from '@graphql-yoga/render-graphiql/graphiql';
import { GRAPHIQL_EXAMPLE } from './graphiql-example.js';
import { CACHE_REVALIDATE, StaticAsset } from './static-asset.js';

/** graphql-ws's browser build (a UMD script that defines window.graphqlWs). */
function graphqlWsBrowserScript(): string {
  const require = createRequire(import.meta.url);
  return readFileSync(join(dirname(require.resolve('graphql-ws/package.json')), 'umd', 'graphql-ws.min.js'), 'utf8');
}

/**
 * The fetcher GraphiQL runs with. Yoga's own sends the Headers tab over HTTP but, on a
 * WebSocket, only inside each subscribe message; this one opens one graphql-ws connection per
 * key and puts the key in connection_init, where the contract says it travels. Introspection
 * (the Docs pane) goes over HTTP like any query, and is answered whatever key is in the tab.
 */
const FETCHER = /* js */ `
(function () {
  var endpoint = new URL(${JSON.stringify('/graphql')}, location.href);
  var socketUrl = endpoint.href.replace(/^http/, 'ws');
  var clients = new Map();
  function keyOf(headers) {
    for (var name in headers || {}) if (name.toLowerCase() === 'api-key' || name.toLowerCase() === 'apikey') return String(headers[name]);
    return '';
  }
  function socketFor(key) {
    var client = clients.get(key);
    if (!client) {
      client = graphqlWs.createClient({ url: socketUrl, connectionParams: key ? { 'API-Key': key } : {}, retryAttempts: 0 });
      clients.set(key, client);
    }
    return client;
  }
  // From the text being sent, not GraphiQL's documentAST: on a busy page that can still be the
  // previous document's, which sent a subscription over HTTP (seen in the browser test).
  function operationType(params) {
    var text = String(params.query || '').replace(/"""[\\s\\S]*?"""|"(?:[^"\\\\\\n]|\\\\.)*"|#[^\\n]*/g, ' ');
    // Top-level words only (outside every brace and parenthesis): the operations' keywords and names.
    var depth = 0, top = '';
    for (var i = 0; i < text.length; i++) {
      var c = text[i];
      if (c === '{' || c === '(') { depth++; top += ' '; } else if (c === '}' || c === ')') { depth--; top += ' '; } else top += depth === 0 ? c : ' ';
    }
    var re = /\\b(query|mutation|subscription|fragment)\\b\\s*([_A-Za-z][_0-9A-Za-z]*)?/g;
    var first = null;
    for (var m = re.exec(top); m; m = re.exec(top)) {
      if (m[1] === 'fragment') continue;
      if (!params.operationName || m[2] === params.operationName) return m[1];
      first = first || m[1];
    }
    return first || 'query';
  }
  window.graphiqlFetcher = function (params, options) {
    var headers = (options && options.headers) || {};
    if (operationType(params) === 'subscription') {
      return socketFor(keyOf(headers)).iterate({ query: params.query, variables: params.variables, operationName: params.operationName });
    }
    return fetch(endpoint, {
      method: 'POST',
      headers: Object.assign({ 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json' }, headers),
      body: JSON.stringify(params),
    }).then(function (response) { return response.json(); });
  };
})();
`;

export interface GraphiQLOptions {
  title: string;
}

/**
 * The bundled GraphiQL page (yoga's build: no CDN, which private networks lack), with our fetcher,
 * the example operations and an empty API-Key header to fill in. About 9 MB: served compressed,
 * revalidated by ETag.
 */
export function createGraphiQLPage({ title }: GraphiQLOptions): StaticAsset {
  const options = {
    title,
    defaultQuery: GRAPHIQL_EXAMPLE,
    headers: JSON.stringify({ 'API-Key': '' }, null, 2),
    shouldPersistHeaders: true,
    defaultEditorToolsVisibility: 'headers',
  };
  // JSON inside a <script>: escape "<" so that no string in it can close the element.
  const json = (value: unknown) => JSON.stringify(value).replace(/</g, '\\u003c');
  const html = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>${title.replace(/[<&]/g, '')}</title>
    <link rel="icon" href="${favicon}" />
    <style>${css}</style>
  </head>
  <body id="body" class="no-focus-outline">
    <noscript>GraphiQL needs JavaScript.</noscript>
    <div id="root"></div>
    <script>
      (function () {
        function blobUrl(source) { return URL.createObjectURL(new Blob([source], { type: 'application/javascript' })); }
        var workers = { editorWorkerService: blobUrl(${json(editorWorkerService)}), json: blobUrl(${json(jsonWorker)}), graphql: blobUrl(${json(graphqlWorker)}) };
        self.MonacoEnvironment = { globalAPI: false, getWorkerUrl: function (_, label) { return workers[label]; } };
      })();
    </script>
    <script>${graphqlWsBrowserScript()}</script>
    <script>${FETCHER}</script>
    <script>${js}</script>
    <script>
      YogaGraphiQL.renderYogaGraphiQL(document.querySelector('#root'), Object.assign(${json(options)}, { fetcher: window.graphiqlFetcher }));
    </script>
  </body>
</html>
`;
  return new StaticAsset(Buffer.from(html), 'text/html; charset=utf-8', CACHE_REVALIDATE);
}

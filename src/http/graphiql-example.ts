/** The operations GraphiQL opens with: run CreateJob, then paste the id into FollowJob. */
export const GRAPHIQL_EXAMPLE = `# The Docs pane (top left) is the API reference.
# To run operations, put your key in the Headers tab below:
#   {"API-Key": "sdk_..."}
# The server printed one on its first start; make more with
#   npm run keys -- create --name NAME
# Run CreateJob, then paste its id into FollowJob and run that:
# it streams the job's progress over the WebSocket.

mutation CreateJob {
  text2image(input: {
    modelId: "sd1.5"
    prompt: "a cottage in the woods, watercolor"
    negativePrompt: "low quality, blurry"
    numInferenceSteps: 20
    guidanceScale: 7.5
    width: 512
    height: 512
    samples: 1
  }) {
    id
    status
    seed
    queuePosition
  }
}

subscription FollowJob {
  jobStatus(id: "paste the job id here") {
    status
    progress { step totalSteps fraction }
    downloadUrls
    error { code message }
  }
}

query Models {
  models { id name kind triggerWords }
}
`;
